import LabSync
import PluginHost
import Synchronization
import Testing
import TestSupport
import VirtualMemory

/// Data stays intact while remote peers read and write through on-demand
/// regions (an explicit one and an implicit one over the same memory) with
/// DMA on the NIC's engines, and the primary reclaims and migrates under
/// them. Each page has one writer, which checks every write it makes; a
/// reader checks that a page never goes back to an older version than one
/// it had already seen completed. At the end every page holds its last
/// version, nothing leaked, and no stale or freed translation was used.
/// `MMULAB_STRESS` scales the rounds.
@Suite("RDMA plugin: storm")
struct RDMAStormTests {
    static let pages = 256

    @Test func dataSurvivesReclaimAndMigrationUnderRemoteTraffic() throws {
        let f = try RDMAFixture(frames: 220, nodes: 2, swapSlots: 4096, options: "dma-us=20,dma-engines=2,implicit-chunk=32")
        let (base, explicit) = try f.mapAndBind(pages: Self.pages)
        let implicit = try f.registerImplicit()
        for i in 0..<Self.pages { try f.space.write(base + UInt64(i) * page, tag(i, 0)) }
        f.machine.startBackgroundReclaim()
        defer { f.machine.stopBackgroundReclaim() }

        let problems = Problems(sync: f.machine.sync)
        let rounds = 150 * stressScale
        // Completed versions per page, published by each page's one writer.
        let versions = SpinLocked<[UInt32]>(Array(repeating: 0, count: Self.pages), name: "versions", domain: f.machine.sync)

        var writers: [any ThreadHandle] = []
        for owner in 0..<3 {
            writers.append(f.machine.sync.spawnThread(named: owner == 0 ? "cpu-writer" : "peer-writer-\(owner)") {
                var rng = SplitMix64(seed: testSeed &+ UInt64(owner))
                for _ in 0..<rounds {
                    let i = Int(rng.next() % UInt64(Self.pages / 3)) * 3 + owner
                    let address = base + UInt64(i) * page
                    let version = versions.withLock { $0[i] } + 1
                    do {
                        if owner == 0 {
                            try f.space.write(address, tag(i, version))
                            let back = try f.space.read(address)
                            if back != tag(i, version) { problems.note("CPU page \(i) v\(version) read back \(back)") }
                        } else {
                            let region = rng.next() % 2 == 0 ? explicit : implicit
                            try f.deviceWrite(region, address, tag(i, version))
                            let back = try f.deviceRead(region, address)
                            if back != tag(i, version) { problems.note("peer page \(i) v\(version) read back \(back)") }
                        }
                    } catch {
                        problems.note("writer \(owner) page \(i): \(error)")
                    }
                    versions.withLock { $0[i] = version }
                }
            })
        }
        let stop = Atomic<Bool>(false)
        let reader = f.machine.sync.spawnThread(named: "peer-reader") {
            var rng = SplitMix64(seed: testSeed &+ 17)
            while !stop.load(ordering: .relaxed) {
                let i = Int(rng.next() % UInt64(Self.pages))
                let before = versions.withLock { $0[i] }
                do {
                    let bytes = try f.deviceRead(rng.next() % 2 == 0 ? explicit : implicit, base + UInt64(i) * page)
                    let after = versions.withLock { $0[i] }
                    let index = Int(bytes[0]) | Int(bytes[1]) << 8 | Int(bytes[2]) << 16 | Int(bytes[3]) << 24
                    let version = UInt32(bytes[4]) | UInt32(bytes[5]) << 8 | UInt32(bytes[6]) << 16 | UInt32(bytes[7]) << 24
                    if index != i || bytes[15] != 0xA5 || version < before || version > after + 1 {
                        problems.note("peer reader: page \(i) holds \(bytes), completed versions were \(before)...\(after)")
                    }
                } catch {
                    problems.note("peer reader page \(i): \(error)")
                }
            }
        }
        let migrator = f.machine.sync.spawnThread(named: "migrator") {
            var rng = SplitMix64(seed: testSeed &+ 29)
            while !stop.load(ordering: .relaxed) {
                let address = base + (rng.next() % UInt64(Self.pages)) * page
                _ = f.machine.migrate(f.space, address: address, to: Int(rng.next() % 2))
            }
        }
        for writer in writers { writer.join() }
        stop.store(true, ordering: .relaxed)
        reader.join()
        migrator.join()
        f.machine.stopBackgroundReclaim()

        for i in 0..<Self.pages {
            let bytes = try f.space.read(base + UInt64(i) * page)
            let expected = tag(i, versions.withLock { $0[i] })
            if bytes != expected { problems.note("final page \(i): \(bytes), expected \(expected)") }
        }
        let seen = problems.all
        #expect(seen == [], "seed \(testSeed)")
        #expect(f.stat("invalidations") > 0 && f.stat("pages dirtied") > 0, "the storm invalidated what the NIC wrote")
        #expect(f.stat("children created") > 0)
        #expect(f.machine.statistics.evictedAnonymous.load(ordering: .relaxed) > 0, "memory was tight enough to swap")
        let counters = f.nic.statistics().filter { $0.value > 0 }.map { "\($0.name) \($0.value)" }.joined(separator: ", ")
        let vm = f.machine.statistics
        print("RDMA storm (seed \(testSeed), \(rounds) rounds per writer): \(counters); "
            + "swapped out \(vm.evictedAnonymous.load(ordering: .relaxed)), migrated \(vm.migrations.load(ordering: .relaxed))")
        let problemsAtEnd = f.finish()
        #expect(problemsAtEnd == [], "seed \(testSeed)")
    }
}
