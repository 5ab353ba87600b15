import LabSync
import PluginHost
import Synchronization
import Testing
import TestSupport
import VirtualMemory

/// The parts of the contract RDMA makes hard: DMA in flight while the
/// primary takes a page, the OOM reaper that may not wait, dirty state
/// that must reach the file, and pins that block reclaim and migration.
@Suite("RDMA plugin: the contract")
struct ContractTests {
    /// Set once a slow remote operation returned.
    final class Finished: Sendable {
        private let flag = Atomic<Bool>(false)
        func set() { flag.store(true, ordering: .releasing) }
        var isSet: Bool { flag.load(ordering: .acquiring) }
    }

    /// Starts a remote WRITE on its own thread and returns once its DMA is
    /// in flight on an engine (dma-us makes it take that long).
    func startSlowWrite(
        _ f: RDMAFixture, _ region: PluginInstance.Binding, _ address: UInt64, _ bytes: [UInt8], done: Finished
    ) -> any ThreadHandle {
        let thread = f.machine.sync.spawnThread(named: "remote-writer") {
            do { try f.deviceWrite(region, address, bytes) } catch { Issue.record("slow write: \(error)") }
            done.set()
        }
        while f.stat("dma in flight") == 0 { f.machine.sync.sleep(for: .microseconds(100)) }
        return thread
    }

    /// A blockable invalidation zaps the entry, then waits for the DMA in
    /// flight on it before it reports the page dirty and lets reclaim take
    /// it: reclaim returns only after the write landed, and the swapped
    /// page holds it.
    @Test func reclaimWaitsForDMAInFlightAndKeepsItsWrite() throws {
        let f = try RDMAFixture(options: "dma-us=150000")
        let (base, region) = try f.mapAndBind(pages: 4)
        try f.nic.prefetch(region, deviceAddress: base, length: 4 * page)
        let done = Finished()
        let writer = startSlowWrite(f, region, base + page, tag(1, 9), done: done)
        #expect(try f.machine.pageOut(f.space, start: base + page, length: page) == 1)
        #expect(done.isSet || f.stat("dma in flight") == 0, "reclaim returned while the NIC's DMA was in flight")
        writer.join()
        #expect(f.stat("drain waits") == 1)
        #expect(f.stat("pages dirtied") == 1)
        #expect(try f.space.read(base + page) == tag(1, 9), "the DMA's write reached the swapped page")
        #expect(f.finish() == [])
    }

    /// The OOM reaper's invalidations may not sleep (Linux:
    /// `__oom_reap_task_mm`). The NIC
    /// answers retry at once (even while a DMA holds the region for a long
    /// time), the reaper skips the range, retries a bounded number of
    /// times and gives up; nothing deadlocks. Once the region is
    /// deregistered the reaper frees the memory.
    @Test func theOOMReaperGetsRetryAtOnceAndFreesTheMemoryAfterDeregistration() throws {
        let f = try RDMAFixture(options: "dma-us=400000")
        let (base, region) = try f.mapAndBind(pages: 32)
        for i in 0..<32 { try f.space.write(base + UInt64(i) * page, tag(i, 1)) }
        try f.nic.prefetch(region, deviceAddress: base, length: 32 * page)
        let done = Finished()
        let writer = startSlowWrite(f, region, base, tag(0, 2), done: done)

        #expect(!f.machine.reap(f.space), "the reaper gives up on a range the NIC refuses")
        #expect(!done.isSet, "the reaper finished while the DMA was still in flight: it did not wait for it")
        #expect(f.stat("retries") >= 10, "every round was refused")
        #expect(f.machine.statistics.oomGiveUps.load(ordering: .relaxed) == 1)
        #expect(f.space.residentPages.load(ordering: .relaxed) == 32, "a refused range is left alone")
        writer.join()

        f.nic.detach(region)
        #expect(f.machine.reap(f.space), "with the region gone nothing refuses")
        #expect(f.space.residentPages.load(ordering: .relaxed) == 0, "the reaper freed the memory")
        #expect(f.finish() == [])
    }

    /// The whole OOM path, end to end: a second address space runs the
    /// machine out of memory (no swap), the OOM killer picks the address
    /// space the NIC has registered (the biggest), and the reaper meets the
    /// NIC's retry: it gives up after its bounded rounds instead of
    /// stalling, and the killer moves on to the next victim (Linux:
    /// MMF_OOM_SKIP), here the allocating address space itself. Once the
    /// region is deregistered, reaping frees the first victim's memory and
    /// a new address space can have it.
    @Test func anOOMKillOfARegisteredAddressSpaceFailsFastThenFreesAfterDeregistration() throws {
        let f = try RDMAFixture(frames: 160, swapSlots: 0)
        let (base, region) = try f.mapAndBind(pages: 100)
        try f.nic.prefetch(region, deviceAddress: base, length: 100 * page)
        let hog = f.machine.makeAddressSpace()
        let hogBase = try hog.map(length: 80 * page, kind: .anonymousPrivate)
        #expect(throws: MemoryError.killed) { try hog.populate(start: hogBase, length: 80 * page, write: true) }
        let stats = f.machine.statistics
        #expect(f.space.isKilled, "the OOM killer chose the biggest address space first")
        #expect(stats.oomGiveUps.load(ordering: .relaxed) >= 1, "the reaper gave up on it instead of waiting for the NIC")
        #expect(hog.isKilled && stats.oomKills.load(ordering: .relaxed) == 2, "and the killer moved on")
        #expect(f.stat("retries") >= 10)
        #expect(f.space.residentPages.load(ordering: .relaxed) == 100, "the refused victim's memory is still held")

        f.nic.detach(region)
        #expect(f.machine.reap(f.space))
        #expect(f.space.residentPages.load(ordering: .relaxed) == 0, "deregistered, the victim's memory is freed")
        let next = f.machine.makeAddressSpace()
        let nextBase = try next.map(length: 120 * page, kind: .anonymousPrivate)
        try next.populate(start: nextBase, length: 120 * page, write: true)
        #expect(f.finish() == [])
    }

    /// The same, with the reaper racing remote traffic from several threads:
    /// no refusal ever sleeps (the host would record a context violation),
    /// and the traffic either succeeds or fails cleanly once the reaper got
    /// a range.
    @Test func theReaperRacingRemoteTrafficNeitherSleepsNorDeadlocks() throws {
        let f = try RDMAFixture()
        let (base, region) = try f.mapAndBind(pages: 128)
        for i in 0..<128 { try f.space.write(base + UInt64(i) * page, tag(i, 1)) }
        let stop = Atomic<Bool>(false)
        var peers: [any ThreadHandle] = []
        for peer in 0..<3 {
            peers.append(f.machine.sync.spawnThread(named: "peer-\(peer)") {
                var rng = SplitMix64(seed: testSeed &+ UInt64(peer))
                while !stop.load(ordering: .relaxed) {
                    let i = Int(rng.next() % 128)
                    let bytes = try? f.deviceRead(region, base + UInt64(i) * page)
                    if let bytes, bytes != tag(i, 1), bytes != [UInt8](repeating: 0, count: 16) {
                        Issue.record("peer \(peer) read \(bytes) from page \(i) (seed \(testSeed))")
                    }
                }
            })
        }
        for _ in 0..<5 * stressScale { _ = f.machine.reap(f.space) }
        stop.store(true, ordering: .relaxed)
        for peer in peers { peer.join() }
        #expect(f.stat("retries") > 0)
        #expect(f.machine.sync.contextViolations.snapshot.isEmpty, "a refusal slept")
        #expect(f.finish() == [])
    }

    /// A remote WRITE to a file page must reach the file (the dirty state
    /// transfers: docs/CONTRACT.md, rule 15), even
    /// when writeback cleaned the page between the NIC's translation and
    /// its write. `pinned` chooses the registration.
    func remoteWriteReachesTheFile(pinned: Bool, faults: MemoryFaultInjection = []) throws -> (stored: [UInt8], problems: [String]) {
        let f = try RDMAFixture(faults: faults)
        let file = f.machine.makeFile(named: "rdma-target", pages: 4)
        let base = try f.space.map(length: 4 * page, kind: .fileShared, file: file)
        for i in 0..<4 { try f.space.write(base + UInt64(i) * page, tag(i, 1)) }
        let region = try f.nic.attach(addressSpace: f.space.id, start: base, length: 4 * page, pinned: pinned)
        try f.deviceWrite(region, base + 2 * page, tag(2, 2))
        f.machine.writeback(file)  // cleans the page; write-protects the CPU's mapping (an invalidation for ODP)
        try f.deviceWrite(region, base + 2 * page, tag(2, 3))  // the NIC writes after the page was cleaned
        f.nic.detach(region)
        _ = try f.machine.pageOut(f.space, start: base, length: 4 * page)
        _ = f.machine.dropCaches()
        #expect(file.cachedPages == 0, "the file's pages were reclaimed")
        let stored = file.storedBytes(at: 2)
        return (stored, f.finish())
    }

    @Test func aRemoteWriteToAFilePageSurvivesWritebackAndReclaim() throws {
        for pinned in [false, true] {
            let (stored, problems) = try remoteWriteReachesTheFile(pinned: pinned)
            #expect(stored == tag(2, 3), "\(pinned ? "pinned" : "ODP") region: the file holds \(stored)")
            #expect(problems == [])
        }
    }

    /// The check above can fail: with the host dropping secondaries' dirty
    /// reports, the pinned region's write is lost. (An ODP region's write
    /// survives even then: it faulted the page writable, which dirtied the
    /// CPU's entry, as hmm_range_fault does in Linux.)
    @Test func droppingTheDirtyReportLosesAPinnedRegionsWrite() throws {
        let (stored, _) = try remoteWriteReachesTheFile(pinned: true, faults: .dropSecondaryDirty)
        #expect(stored == tag(2, 2), "the write after writeback is lost without the dirty report: the file holds \(stored)")
    }

    /// The contrast to ODP: a pinned region blocks migration and reclaim of
    /// its pages and shows the pinned memory in its statistics, until it is
    /// deregistered. An ODP region next to it lets both happen.
    @Test func aPinnedRegionBlocksMigrationAndReclaimAndIsReported() throws {
        let f = try RDMAFixture(nodes: 2)
        let (pinnedBase, pinned) = try f.mapAndBind(pages: 8, pinned: true)
        let (odpBase, odp) = try f.mapAndBind(pages: 8)
        for i in 0..<8 {
            try f.deviceWrite(pinned, pinnedBase + UInt64(i) * page, tag(i, 1))
            try f.deviceWrite(odp, odpBase + UInt64(i) * page, tag(i, 1))
        }
        #expect(f.stat("pinned regions") == 1 && f.stat("pinned pages") == 8 && f.stat("odp regions") == 1)
        for i in 0..<8 {
            let result = f.machine.migrate(f.space, address: pinnedBase + UInt64(i) * page, to: 1)
            guard case .pinned = result else {
                Issue.record("page \(i) of the pinned region: \(result)")
                continue
            }
            guard case .migrated = f.machine.migrate(f.space, address: odpBase + UInt64(i) * page, to: 1) else {
                Issue.record("page \(i) of the ODP region did not migrate")
                continue
            }
        }
        #expect(f.machine.statistics.migrationsRefusedPinned.load(ordering: .relaxed) == 8)
        #expect(try f.machine.pageOut(f.space, start: pinnedBase, length: 8 * page) == 0, "pinned pages are unreclaimable")
        #expect(try f.machine.pageOut(f.space, start: odpBase, length: 8 * page) == 8)
        for i in 0..<8 { #expect(try f.deviceRead(odp, odpBase + UInt64(i) * page) == tag(i, 1)) }

        f.nic.detach(pinned)
        #expect(f.stat("pinned pages") == 0 && f.stat("pinned regions") == 0)
        #expect(try f.machine.pageOut(f.space, start: pinnedBase, length: 8 * page) == 8, "unpinned, the pages can go")
        for i in 0..<8 { #expect(try f.space.read(pinnedBase + UInt64(i) * page) == tag(i, 1), "and the NIC's writes went with them") }
        #expect(f.finish() == [])
    }
}
