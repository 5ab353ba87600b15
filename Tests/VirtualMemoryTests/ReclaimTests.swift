import LabSync
import MMUNotifier
import Synchronization
import Testing
import TestSupport
@testable import VirtualMemory

@Suite("Reclaim, swap, migration, KSM and OOM")
struct ReclaimTests {
    /// Writes a tag into every page and checks them all back.
    func fill(_ space: AddressSpace, _ base: UInt64, pages: Int, version: UInt32 = 1) throws {
        for i in 0..<pages {
            try space.write(base + UInt64(i) * page, Tag(space: UInt32(space.id.rawValue), page: UInt32(i), writer: 0, version: version).bytes)
        }
    }

    func check(_ space: AddressSpace, _ base: UInt64, pages: Int, version: UInt32 = 1) throws -> [Int] {
        var wrong: [Int] = []
        for i in 0..<pages where Tag(try space.read(base + UInt64(i) * page)) != Tag(space: UInt32(space.id.rawValue), page: UInt32(i), writer: 0, version: version) {
            wrong.append(i)
        }
        return wrong
    }

    @Test func oversubscribedAnonymousMemorySwapsAndComesBackIntact() throws {
        let machine = makeMachine(frames: 128, swapSlots: 512)
        let space = machine.makeAddressSpace()
        let probe = OrderingProbe(space: space, machine: machine)
        try space.notifiers.register(probe)
        let pages = 300
        let base = try space.map(length: UInt64(pages) * page, kind: .anonymousPrivate)
        try fill(space, base, pages: pages)
        #expect(machine.statistics.evictedAnonymous.load(ordering: .relaxed) > 0, "more pages than frames: something went to swap")
        #expect(try check(space, base, pages: pages).isEmpty)
        #expect(machine.statistics.swapIns.load(ordering: .relaxed) > 0)
        #expect(probe.events.allSatisfy { $0 == .vmscan })
        #expect(probe.problems.isEmpty, "\(probe.problems.prefix(3))")
        space.exit()
        #expect(machine.memory.freeFrames == 128)
        #expect(machine.swap.usedSlots == 0, "exit returns every swap slot")
    }

    /// Write faults racing on the same swapped-in pages while reclaim swaps
    /// them out again: every written page keeps a write, nothing leaks,
    /// nothing crashes. This is the path of the reuse race the RDMA storm
    /// found (a fault copying a page it could not lock freed the frame a
    /// reusing fault held locked; the reusing fault now holds its own
    /// reference). The window is narrow: this test exercises the path but
    /// did not reproduce the old crash in four runs at MMULAB_STRESS=10;
    /// the RDMA storm at MMULAB_STRESS=20 did.
    @Test func racingWriteFaultsOnSwappedPagesKeepEveryWrite() throws {
        let machine = makeMachine(frames: 128)
        let space = machine.makeAddressSpace()
        let pages = 8
        let base = try space.map(length: UInt64(pages) * page, kind: .anonymousPrivate)
        for i in 0..<pages { try space.write(base + UInt64(i) * page, [0]) }
        // Everything starts in swap, so the first faults are swap-ins even if
        // the reclaimer thread is slow to get going.
        #expect(try machine.pageOut(space, start: base, length: UInt64(pages) * page) == pages)
        let rounds = 400 * stressScale
        let stop = Atomic<Bool>(false)
        let written = SpinLocked<Set<[Int]>>([], name: "written", domain: machine.sync)  // [writer, page]
        var threads: [any ThreadHandle] = []
        for writer in 0..<3 {
            threads.append(machine.sync.spawnThread(named: "writer-\(writer)") {
                var rng = SplitMix64(seed: testSeed &+ UInt64(writer))
                for _ in 0..<rounds {
                    let i = Int(rng.next() % UInt64(pages))
                    do {
                        // Half the time a read swaps the page in first
                        // (writable and clean when nobody else uses it);
                        // otherwise the write faults on the swap entry, maps
                        // the page read-only, and reuses it in place.
                        if rng.next() % 2 == 0 { _ = try space.read(base + UInt64(i) * page) }
                        try space.write(base + UInt64(i) * page, [UInt8(writer + 1)])
                        written.withLock { _ = $0.insert([writer, i]) }
                    } catch {
                        Issue.record("writer \(writer) page \(i): \(error) (seed \(testSeed))")
                    }
                }
            })
        }
        let reclaimer = machine.sync.spawnThread(named: "pageout") {
            // Paced: a reclaimer evicting the same 8 pages back to back would
            // starve the faults (the CPU access path bounds its refaults).
            while !stop.load(ordering: .relaxed) {
                _ = try? machine.pageOut(space, start: base, length: UInt64(pages) * page)
                machine.sync.sleep(for: .microseconds(20))
            }
        }
        for thread in threads { thread.join() }
        stop.store(true, ordering: .relaxed)
        reclaimer.join()
        for i in Set(written.withLock { $0.map { $0[1] } }) {
            let bytes = try space.read(base + UInt64(i) * page)
            #expect((1...3).contains(bytes[0]), "page \(i) lost its writes: \(bytes) (seed \(testSeed))")
        }
        #expect(machine.violations.count == 0)
        let stats = machine.statistics
        #expect(stats.evictedAnonymous.load(ordering: .relaxed) > 0 && stats.cowReuses.load(ordering: .relaxed) > 0,
            "pages were swapped out and reused in place after swap-in")
        space.exit()
        _ = machine.dropCaches()
        #expect(machine.memory.freeFrames == 128, "no frame leaked (seed \(testSeed))")
    }

    @Test func aCleanSwappedInPageIsDroppedWithoutAWrite() throws {
        let machine = makeMachine(frames: 64)
        let space = machine.makeAddressSpace()
        let base = try space.map(length: page, kind: .anonymousPrivate)
        try space.write(base, [1, 2, 3])
        #expect(try machine.pageOut(space, start: base, length: page) == 1)
        #expect(space.translate(base).isSwap)
        #expect(machine.swap.writes == 1)
        #expect(try space.read(base)[0...2] == [1, 2, 3])
        #expect(machine.swap.reads == 1)
        #expect(try machine.pageOut(space, start: base, length: page) == 1)
        #expect(machine.swap.writes == 1, "the swap cache kept the slot: no second write")
        try space.write(base, [4])
        #expect(try machine.pageOut(space, start: base, length: page) == 1)
        #expect(machine.swap.writes == 2, "after a write the page must be written again")
        #expect(try space.read(base)[0] == 4)
    }

    /// An eviction that gives a page a fresh swap slot and is then stopped
    /// by a refault before it writes the slot leaves the page in the swap
    /// cache linked to a slot holding a former page's bytes. The page must
    /// still be written when it is next evicted, even if nobody wrote it
    /// meanwhile (Linux's `add_to_swap` marks it dirty). Trusting the
    /// unwritten slot gave a page another address space's old data (issue
    /// 15's "rare wrong mapping": a cross-address-space leak on a CPU read).
    @Test func aFreshSlotIsWrittenEvenWhenItsFirstEvictionIsInterrupted() throws {
        final class RefaultAfterUnmap: AddressSpaceSubscriber, @unchecked Sendable {
            let space: AddressSpace
            let address: UInt64
            let armed = Atomic<Bool>(false)
            let refaulted = Atomic<Bool>(false)
            init(_ space: AddressSpace, _ address: UInt64) {
                self.space = space
                self.address = address
            }
            func invalidateRangeStart(_ range: InvalidationRange) -> StartResult { .ok }
            func invalidateRangeEnd(_ range: InvalidationRange) {
                // Between reclaim's unmap and its check that nobody mapped
                // the page again: a fault maps it again from the swap cache.
                guard range.event == .vmscan, range.contains(address), armed.exchange(false, ordering: .relaxed) else { return }
                refaulted.store((try? space.read(address)) != nil, ordering: .relaxed)
            }
        }
        let machine = makeMachine(frames: 64)
        let other = machine.makeAddressSpace()
        let space = machine.makeAddressSpace()
        // A former page leaves its bytes in a slot that is then freed.
        let former = try other.map(length: page, kind: .anonymousPrivate)
        try other.write(former, [9, 9, 9])
        #expect(try machine.pageOut(other, start: former, length: page) == 1)
        #expect(try other.read(former)[0...2] == [9, 9, 9])
        try other.unmap(start: former, length: page)
        #expect(machine.swap.usedSlots == 0, "the former page's slot is free again, its bytes still in it")

        let base = try space.map(length: page, kind: .anonymousPrivate)
        try space.write(base, [1, 2, 3])
        // Clean, as a page is that no CPU write dirtied (in the first model
        // a read fault zero-filled such a frame; a device that never reports
        // dirty leaves the same state): nothing says it must be written.
        space.ptl.withLock {
            let pte = space.pageTable.entry(base >> 12)
            space.pageTable.set(base >> 12, pte.with(dirty: false))
            machine.memory.clearFlags(.dirty, on: pte.frame)
        }
        let refault = RefaultAfterUnmap(space, base)
        try space.notifiers.register(refault)
        refault.armed.store(true, ordering: .relaxed)
        #expect(try machine.pageOut(space, start: base, length: page) == 0, "the refault stopped the eviction")
        #expect(refault.refaulted.load(ordering: .relaxed) && space.translate(base).isPresent)
        #expect(try machine.pageOut(space, start: base, length: page) == 1)
        #expect(try space.read(base)[0...2] == [1, 2, 3], "the page came back with its own data, not the slot's former bytes")
        #expect(machine.violations.count == 0)
    }

    @Test func dirtyFilePagesAreWrittenBackCleanOnesDropped() throws {
        let machine = makeMachine(frames: 64)
        let space = machine.makeAddressSpace()
        let file = machine.makeFile(named: "f", pages: 2)
        let base = try space.map(length: 2 * page, kind: .fileShared, file: file)
        try space.write(base, [8])
        _ = try space.read(base + page)
        #expect(try machine.pageOut(space, start: base, length: 2 * page) == 2)
        #expect(file.storedBytes(at: 0)[0] == 8)
        #expect(machine.statistics.writebacks.load(ordering: .relaxed) == 1, "only the dirty page is written")
        #expect(try space.read(base)[0] == 8)
    }

    @Test func pagesADeviceUsesHotSurviveReclaim() throws {
        let (evictedHot, evictedCold) = try deviceHotScenario(makeMachine(frames: 128))
        #expect(evictedCold > 0, "reclaim ran and evicted the cold pages")
        #expect(evictedHot == 0, "device-hot pages must not be evicted (docs/CONTRACT.md, rule 12)")
    }

    @Test func migrationMovesThePageAndTellsTheOwner() throws {
        let machine = makeMachine(frames: 128, nodes: 2)
        let space = machine.makeAddressSpace()
        let probe = OrderingProbe(space: space, machine: machine)
        try space.notifiers.register(probe)
        let base = try space.map(length: page, kind: .anonymousPrivate)
        try space.write(base, [4, 2])
        let before = space.translate(base).frame
        let target = 1 - machine.memory.node(of: before).id
        let me = OwnerCookie(77)
        let result = machine.migrate(space, address: base, to: target, owner: me)
        guard case .migrated(let from, let to) = result else {
            Issue.record("migration failed: \(result)")
            return
        }
        #expect(from.rawValue == UInt64(before))
        #expect(machine.memory.node(of: Int32(to.rawValue)).id == target)
        #expect(space.translate(base).frame == Int32(to.rawValue))
        #expect(try space.read(base)[0...1] == [4, 2])
        #expect(probe.ranges.map(\.event) == [.migrate])
        #expect(probe.ranges.first?.owner == me)
        #expect(probe.problems.isEmpty)
    }

    @Test func aPinnedPageCannotMoveAndIsReported() throws {
        let machine = makeMachine(frames: 64, nodes: 2)
        let space = machine.makeAddressSpace()
        let base = try space.map(length: page, kind: .anonymousPrivate)
        let pins = try space.pin(start: base, length: page, write: true)
        let result = machine.migrate(space, address: base, to: 1)
        #expect(result == .pinned(pins[0].frame))
        #expect(machine.statistics.migrationsRefusedPinned.load(ordering: .relaxed) == 1)
        #expect(try machine.pageOut(space, start: base, length: page) == 0, "pinned pages are not reclaimed either")
        machine.unpin(pins)
        if case .migrated = machine.migrate(space, address: base, to: 1) {} else { Issue.record("unpinned page should migrate") }
    }

    @Test func ksmMergesIdenticalPagesAndAWriteBreaksTheSharing() throws {
        let machine = makeMachine(frames: 64)
        let a = machine.makeAddressSpace()
        let b = machine.makeAddressSpace()
        let plain = OrderingProbe(space: a, machine: machine)
        let kvm = MirrorDevice("kvm", machine: machine, space: b, capabilities: [.changePTE, .youngTracking], skipKSMRanges: true)
        try a.notifiers.register(plain)
        try b.notifiers.register(kvm)
        let inA = try a.map(length: page, kind: .anonymousPrivate)
        let inB = try b.map(length: page, kind: .anonymousPrivate)
        try a.write(inA, [9, 9, 9])
        try b.write(inB, [9, 9, 9])
        _ = try kvm.read(inB)
        try a.adviseMergeable(start: inA, length: page)
        try b.adviseMergeable(start: inB, length: page)
        #expect(machine.samePageMerger.scan() == 2)
        #expect(a.translate(inA).frame == b.translate(inB).frame)
        #expect(machine.memory.flags(of: a.translate(inA).frame).contains(.ksm))
        #expect(plain.events == [.ksm, .ksm], "a subscriber without changePTE sees the ksm invalidations")
        #expect(kvm.state.withLock { $0.changePTEs.count } == 2, "the changePTE subscriber is told both PTE changes")
        #expect(kvm.entryCount == 1, "it kept its translation, repointed at the KSM page")
        #expect(try kvm.read(inB)[0...2] == [9, 9, 9])
        #expect(machine.violations.count == 0)
        try a.write(inA, [1])
        #expect(plain.events.last == .cowBreak)
        #expect(try a.read(inA)[0] == 1)
        #expect(try b.read(inB)[0] == 9)
        #expect(machine.statistics.ksmBreaks.load(ordering: .relaxed) == 1)
    }

    @Test func theOOMReaperFailsFastRetriesAndGivesUp() throws {
        let machine = makeMachine(frames: 64)
        let victim = machine.makeAddressSpace()
        let rdma = MirrorDevice("rdma", machine: machine, space: victim)
        rdma.refuseNonBlockable.store(true, ordering: .relaxed)
        try victim.notifiers.register(rdma)
        let base = try victim.map(length: 16 * page, kind: .anonymousPrivate)
        try victim.populate(start: base, length: 16 * page, write: true)
        #expect(!machine.reap(victim), "every start refused: the victim is given up")
        #expect(machine.statistics.oomReapRetries.load(ordering: .relaxed) >= Machine.oomReapRounds)
        #expect(machine.statistics.oomGiveUps.load(ordering: .relaxed) == 1)
        #expect(victim.residentPages.load(ordering: .relaxed) == 16, "nothing was reaped behind the device's back")
        #expect(rdma.events.isEmpty)

        rdma.refuseNonBlockable.store(false, ordering: .relaxed)
        #expect(machine.reap(victim))
        #expect(victim.residentPages.load(ordering: .relaxed) == 0)
        #expect(rdma.events.allSatisfy { $0 == .oomReap })
        #expect(machine.notifierCore.sync.contextViolations.count == 0)
    }

    @Test func runningOutOfMemoryKillsTheBiggestAddressSpace() throws {
        let machine = makeMachine(frames: 64, swapSlots: 0)
        let small = machine.makeAddressSpace()
        let big = machine.makeAddressSpace()
        let smallBase = try small.map(length: 4 * page, kind: .anonymousPrivate)
        try small.populate(start: smallBase, length: 4 * page, write: true)
        let bigBase = try big.map(length: 200 * page, kind: .anonymousPrivate)
        #expect(throws: MemoryError.killed) { try big.populate(start: bigBase, length: 200 * page, write: true) }
        #expect(big.isKilled)
        #expect(!small.isKilled)
        #expect(machine.statistics.oomKills.load(ordering: .relaxed) == 1)
        big.exit()
        small.exit()
        #expect(machine.memory.freeFrames == 64)
    }

    @Test func shrinkersAreAskedWhenReclaimRuns() throws {
        final class Cache: Shrinker, @unchecked Sendable {
            let objects = Atomic<Int>(1_000)
            func count(_ control: ShrinkControl) -> Int { objects.load(ordering: .relaxed) }
            func scan(_ control: ShrinkControl) -> ShrinkScanResult {
                objects.subtract(control.objectsToScan, ordering: .relaxed)
                return .freed(control.objectsToScan)
            }
        }
        let machine = makeMachine(frames: 64)
        let cache = Cache()
        machine.shrinkers.register(cache)
        let space = machine.makeAddressSpace()
        let base = try space.map(length: 100 * page, kind: .anonymousPrivate)
        try space.populate(start: base, length: 100 * page, write: true)
        #expect(cache.objects.load(ordering: .relaxed) < 1_000)
    }

    @Test func backgroundReclaimKeepsFreeMemoryAboveTheLowWatermark() throws {
        let machine = makeMachine(frames: 256)
        machine.startBackgroundReclaim()
        defer { machine.stopBackgroundReclaim() }
        let space = machine.makeAddressSpace()
        let base = try space.map(length: 250 * page, kind: .anonymousPrivate)
        try space.populate(start: base, length: 250 * page, write: true)
        let deadline = machine.sync.now() + .seconds(5)
        while machine.memory.freeFrames < machine.memory.configuration.lowFree && machine.sync.now() < deadline {
            machine.sync.sleep(for: .milliseconds(5))
        }
        #expect(machine.memory.freeFrames >= machine.memory.configuration.lowFree)
        #expect(machine.statistics.backgroundReclaims.load(ordering: .relaxed) > 0)
    }
}

/// Cold CPU pages and device-hot pages; reclaim passes run between device
/// uses. Returns (device translations lost to reclaim, cold pages evicted).
func deviceHotScenario(_ machine: Machine) throws -> (Int, Int) {
    let space = machine.makeAddressSpace()
    let device = MirrorDevice("gpu", machine: machine, space: space)
    try space.notifiers.register(device)
    let cold = try space.map(length: 64 * page, kind: .anonymousPrivate)
    try space.populate(start: cold, length: 64 * page, write: true)
    let hot = try space.map(length: 8 * page, kind: .anonymousPrivate)
    try space.populate(start: hot, length: 8 * page, write: true)  // real frames, not the zero page
    for pass in 0..<6 {
        for j in 0..<8 { _ = try device.read(hot + UInt64(j) * page) }
        ExecutionContext.current.withReclaimContext { _ = machine.shrink(machine.memory.nodes[0], target: 16) }
        #expect(machine.violations.count == 0, "pass \(pass)")
    }
    return (device.state.withLock { $0.evictedEntries }, machine.statistics.evictedAnonymous.load(ordering: .relaxed))
}
