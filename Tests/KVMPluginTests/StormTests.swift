import LabSync
import PluginHost
import Synchronization
import Testing
import TestSupport
import VirtualMemory

/// vCPUs on several threads against every way the primary takes a page:
/// kswapd and direct reclaim, migration across nodes, KSM merging a region
/// of duplicates, munmap and mmap of a memslot's backing, and the OOM
/// reaper. `MMULAB_STRESS` scales the rounds.
@Suite("KVM plugin: storms")
struct KVMStormTests {
    static let pages = 192
    static let duplicates = 32
    static let churnPages = 8

    /// Each page of the main slot has one writer vCPU, which checks every
    /// write it makes; a reader vCPU checks that a page never goes back to
    /// an older version than one completed before its read; a fourth reads
    /// the KSM region, whose content never changes. At the end every page
    /// holds its last version, the EPT agrees with its reverse map, nothing
    /// leaked, and the host saw no stale or freed translation used.
    @Test func guestDataSurvivesReclaimMigrationKSMAndMunmap() throws {
        let f = try KVMFixture(frames: 260, nodes: 2, swapSlots: 4096)
        let (hva, slot) = try f.memslot(pages: Self.pages)
        let (mergeHVA, mergeSlot) = try f.memslot(pages: Self.duplicates, at: 0x2_0000_0000, mergeable: true)
        let (churnHVA, churnSlot) = try f.memslot(pages: Self.churnPages, at: 0x3_0000_0000)
        for i in 0..<Self.pages { try f.guestWrite(slot, guestBase + UInt64(i) * page, tag(i, 0)) }
        for i in 0..<Self.duplicates { try f.space.write(mergeHVA + UInt64(i) * page, tag(1_000 + i % 4, 0)) }
        f.machine.startBackgroundReclaim()
        defer { f.machine.stopBackgroundReclaim() }

        let problems = Problems(sync: f.machine.sync)
        let rounds = 400 * stressScale
        // The vCPUs run until the pressure thread has done this much too, so
        // the two overlap however the threads are scheduled.
        let pressureRounds = 300 * stressScale
        let pressureDone = Atomic<Int>(0)
        let versions = SpinLocked<[UInt32]>(Array(repeating: 0, count: Self.pages), name: "versions", domain: f.machine.sync)
        var writers: [any ThreadHandle] = []
        for owner in 0..<2 {
            writers.append(f.machine.sync.spawnThread(named: "vcpu-writer-\(owner)") {
                var rng = SplitMix64(seed: testSeed &+ UInt64(owner))
                var round = 0
                while round < rounds || pressureDone.load(ordering: .relaxed) < pressureRounds {
                    round += 1
                    let i = Int(rng.next() % UInt64(Self.pages / 2)) * 2 + owner
                    let gpa = guestBase + UInt64(i) * page
                    let version = versions.withLock { $0[i] } + 1
                    do {
                        try f.guestWrite(slot, gpa, tag(i, version))
                        let back = try f.guestRead(slot, gpa)
                        if back != tag(i, version) { problems.note("vcpu \(owner) page \(i) v\(version) read back \(back)") }
                    } catch {
                        problems.note("vcpu \(owner) page \(i): \(error)")
                    }
                    versions.withLock { $0[i] = version }
                }
            })
        }
        let stop = Atomic<Bool>(false)
        let reader = f.machine.sync.spawnThread(named: "vcpu-reader") {
            var rng = SplitMix64(seed: testSeed &+ 17)
            while !stop.load(ordering: .relaxed) {
                let i = Int(rng.next() % UInt64(Self.pages))
                let before = versions.withLock { $0[i] }
                do {
                    let bytes = try f.guestRead(slot, guestBase + UInt64(i) * page)
                    let after = versions.withLock { $0[i] }
                    let index = Int(bytes[0]) | Int(bytes[1]) << 8 | Int(bytes[2]) << 16 | Int(bytes[3]) << 24
                    let version = UInt32(bytes[4]) | UInt32(bytes[5]) << 8 | UInt32(bytes[6]) << 16 | UInt32(bytes[7]) << 24
                    if index != i || bytes[15] != 0xA5 || version < before || version > after + 1 {
                        problems.note("reader: page \(i) holds \(bytes), completed versions were \(before)...\(after)")
                    }
                } catch {
                    problems.note("reader page \(i): \(error)")
                }
                // The KSM region never changes, merged or not.
                let j = Int(rng.next() % UInt64(Self.duplicates))
                do {
                    let bytes = try f.guestRead(mergeSlot, 0x2_0000_0000 + UInt64(j) * page)
                    if bytes != tag(1_000 + j % 4, 0) { problems.note("merge region page \(j) holds \(bytes)") }
                } catch {
                    problems.note("merge region page \(j): \(error)")
                }
                // The churned slot: its backing comes and goes; an access
                // either fails cleanly or sees zeros (fresh memory).
                if let bytes = try? f.guestRead(churnSlot, 0x3_0000_0000 + (rng.next() % UInt64(Self.churnPages)) * page),
                    bytes != [UInt8](repeating: 0, count: 16)
                {
                    problems.note("churned slot read \(bytes)")
                }
            }
        }
        let pressure = f.machine.sync.spawnThread(named: "pressure") {
            var rng = SplitMix64(seed: testSeed &+ 29)
            var round = 0
            while !stop.load(ordering: .relaxed) {
                round += 1
                let address = hva + (rng.next() % UInt64(Self.pages)) * page
                switch round % 8 {
                case 0: _ = f.machine.samePageMerger.scan()
                case 1:
                    try? f.space.unmap(start: churnHVA, length: UInt64(Self.churnPages) * page)
                    _ = try? f.space.map(length: UInt64(Self.churnPages) * page, kind: .anonymousPrivate, at: churnHVA)
                case 2, 3: _ = try? f.machine.pageOut(f.space, start: address, length: 4 * page)
                default: _ = f.machine.migrate(f.space, address: address, to: Int(rng.next() % 2))
                }
                pressureDone.add(1, ordering: .relaxed)
            }
        }
        for writer in writers { writer.join() }
        stop.store(true, ordering: .relaxed)
        reader.join()
        pressure.join()
        f.machine.stopBackgroundReclaim()

        for i in 0..<Self.pages {
            let bytes = try f.space.read(hva + UInt64(i) * page)
            let expected = tag(i, versions.withLock { $0[i] })
            if bytes != expected { problems.note("final page \(i): \(bytes), expected \(expected)") }
        }
        do { try f.command(slot, .verify) } catch { problems.note("\(error)") }
        #expect(problems.all == [], "seed \(testSeed)")
        #expect(f.stat("invalidations") > 0 && f.stat("entries zapped") > 0 && f.stat("pages dirtied") > 0)
        #expect(f.machine.statistics.evictedAnonymous.load(ordering: .relaxed) > 0, "memory was tight enough to swap")
        let counters = f.instance.statistics().filter { $0.value > 0 }.map { "\($0.name) \($0.value)" }.joined(separator: ", ")
        let vm = f.machine.statistics
        print("KVM storm (seed \(testSeed), \(pressureDone.load(ordering: .relaxed)) pressure rounds): \(counters); swapped out "
            + "\(vm.evictedAnonymous.load(ordering: .relaxed)), migrated \(vm.migrations.load(ordering: .relaxed)), "
            + "KSM merges \(vm.ksmMerges.load(ordering: .relaxed))")
        #expect(f.finish() == [], "seed \(testSeed)")
    }

    /// The OOM reaper's invalidations are non-blockable (Linux:
    /// `__oom_reap_task_mm`, `mmu_notifier_invalidate_range_start_nonblock`).
    /// KVM never refuses one: it zaps, and its TLB flush spins for the vCPUs in
    /// guest mode rather than sleeping. The reaper succeeds while vCPUs
    /// run, nothing sleeps where it may not, and the vCPUs then fail cleanly.
    @Test func theOOMReaperIsNeverRefusedAndNothingSleeps() throws {
        let f = try KVMFixture()
        let (_, slot) = try f.memslot(pages: 64)
        for i in 0..<64 { try f.guestWrite(slot, guestBase + UInt64(i) * page, tag(i, 1)) }
        let stop = Atomic<Bool>(false)
        let problems = Problems(sync: f.machine.sync)
        var vcpus: [any ThreadHandle] = []
        for n in 0..<3 {
            vcpus.append(f.machine.sync.spawnThread(named: "vcpu-\(n)") {
                var rng = SplitMix64(seed: testSeed &+ UInt64(n))
                while !stop.load(ordering: .relaxed) {
                    let i = Int(rng.next() % 64)
                    do {
                        let bytes = try f.guestRead(slot, guestBase + UInt64(i) * page)
                        if bytes != tag(i, 1) { problems.note("vcpu \(n) page \(i) read \(bytes)") }
                    } catch {
                        // Once killed, the fault path fails; a read never returns wrong data.
                        if !f.space.isKilled { problems.note("vcpu \(n) page \(i), before the kill: \(error)") }
                    }
                }
            })
        }
        while f.stat("guest reads") < 2_000 { f.machine.sync.sleep(for: .microseconds(100)) }
        let reaped = f.machine.kill(f.space)
        stop.store(true, ordering: .relaxed)
        for vcpu in vcpus { vcpu.join() }
        #expect(reaped, "KVM never refuses the reaper: everything was reaped in the first rounds")
        #expect(f.machine.statistics.oomReapRetries.load(ordering: .relaxed) == 0)
        #expect(f.stat("non-blockable invalidations") > 0)
        #expect(f.space.residentPages.load(ordering: .relaxed) == 0, "the reaper freed the guest's memory and nothing faulted it back")
        #expect(problems.all == [], "seed \(testSeed)")
        #expect(f.finish() == [], "seed \(testSeed)")
    }
}

/// Regressions found in review.
@Suite("KVM plugin: review regressions")
struct KVMRegressionTests {
    /// Two overlapping MADV_DONTNEEDs: the first zaps the entry and, slowed
    /// down between its zap and its flush (`flush-delay-us`), has not
    /// flushed yet when the second finds nothing left to zap, ends, and
    /// frees the page. The second must flush anyway (KVM's `tlbs_dirty`),
    /// or a vCPU reading in a loop keeps using the freed page from its TLB.
    @Test func anInvalidationThatFindsNothingToZapStillFlushesAnOutstandingZap() throws {
        let f = try KVMFixture(options: "flush-delay-us=20000")
        let (hva, slot) = try f.memslot(pages: 4)
        try f.guestWrite(slot, guestBase, tag(0, 1))
        let stop = Atomic<Bool>(false)
        let reads = Atomic<Int>(0)
        let vcpu = f.machine.sync.spawnThread(named: "vcpu") {
            while !stop.load(ordering: .relaxed) {
                _ = try? f.guestRead(slot, guestBase)
                reads.add(1, ordering: .relaxed)
            }
        }
        while reads.load(ordering: .relaxed) < 100 { f.machine.sync.sleep(for: .microseconds(100)) }
        let first = f.machine.sync.spawnThread(named: "dontneed-1") { try? f.space.adviseDontNeed(start: hva, length: page) }
        while f.stat("entries zapped") == 0 { f.machine.sync.sleep(for: .microseconds(100)) }
        try f.space.adviseDontNeed(start: hva, length: page)  // finds nothing to zap
        // Reuse the freed frame, so a stale read would see someone else's data.
        let other = try f.space.map(length: 4 * page, kind: .anonymousPrivate)
        for i in 0..<4 { try f.space.write(other + UInt64(i) * page, tag(99, 9)) }
        let readsBefore = reads.load(ordering: .relaxed)
        while reads.load(ordering: .relaxed) < readsBefore + 100 { f.machine.sync.sleep(for: .microseconds(100)) }
        first.join()
        stop.store(true, ordering: .relaxed)
        vcpu.join()
        #expect(f.finish() == [], "seed \(testSeed)")
    }

    /// Enabling dirty logging again while it is on keeps the pages logged
    /// and not yet read (KVM keeps the bitmap on a flags-only update).
    @Test func enablingDirtyLoggingTwiceKeepsTheLog() throws {
        let f = try KVMFixture()
        let (_, slot) = try f.memslot(pages: 8)
        try f.command(slot, .enableDirtyLog)
        try f.guestWrite(slot, guestBase + 3 * page, tag(3, 1))
        try f.command(slot, .enableDirtyLog)
        #expect(try f.dirtyPages(slot, pages: 8) == [3])
        #expect(f.finish() == [])
    }
}
