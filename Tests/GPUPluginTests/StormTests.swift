import LabSync
import MMUNotifier
import PluginHost
import Synchronization
import Testing
import TestSupport
import VirtualMemory

/// Data stays intact under reclaim and migration pressure: CPU and GPU
/// writers each own a third of the pages and check every write they make;
/// a GPU reader checks that every page it sees holds its own page's data;
/// a migrator moves windows to VRAM and back; memory is tight enough that
/// the background reclaimer swaps and the GPU's shrinker runs. At the end
/// every page holds its last version, nothing leaked, and no stale or
/// freed translation was used. `MMULAB_STRESS` scales the rounds.
@Suite("GPU plugin: storm")
struct GPUStormTests {
    static let pages = 384

    @Test func dataSurvivesReclaimAndMigrationPressure() throws {
        let f = try GPUFixture(frames: 360, swapSlots: 8192, options: "vram=96,tlb=32")
        let (base, binding) = try f.mapAndBind(pages: Self.pages)
        for i in 0..<Self.pages { try f.space.write(base + UInt64(i) * page, tag(i, 0)) }
        f.machine.startBackgroundReclaim()
        defer { f.machine.stopBackgroundReclaim() }

        let problems = Problems(sync: f.machine.sync)
        let rounds = 150 * stressScale
        // Final versions, written only by each page's owner, read after join.
        let finals = SpinLocked<[UInt32]>(Array(repeating: 0, count: Self.pages), name: "finals", domain: f.machine.sync)

        var writers: [any ThreadHandle] = []
        for owner in 0..<3 {
            writers.append(f.machine.sync.spawnThread(named: owner == 0 ? "cpu-writer" : "gpu-writer-\(owner)") {
                var rng = SplitMix64(seed: testSeed &+ UInt64(owner))
                var versions = [UInt32](repeating: 0, count: Self.pages)
                for _ in 0..<rounds {
                    let i = Int(rng.next() % UInt64(Self.pages / 3)) * 3 + owner
                    let address = base + UInt64(i) * page
                    versions[i] += 1
                    do {
                        if owner == 0 {
                            try f.space.write(address, tag(i, versions[i]))
                            let back = try f.space.read(address)
                            if back != tag(i, versions[i]) { problems.note("CPU page \(i) v\(versions[i]) read back \(back)") }
                        } else {
                            try f.deviceWrite(binding, address, tag(i, versions[i]))
                            let back = try f.deviceRead(binding, address)
                            if back != tag(i, versions[i]) { problems.note("GPU page \(i) v\(versions[i]) read back \(back)") }
                        }
                    } catch {
                        problems.note("writer \(owner) page \(i): \(error)")
                    }
                }
                finals.withLock { for i in stride(from: owner, to: Self.pages, by: 3) { $0[i] = versions[i] } }
            })
        }
        let stop = Atomic<Bool>(false)
        let reader = f.machine.sync.spawnThread(named: "gpu-reader") {
            var rng = SplitMix64(seed: testSeed &+ 17)
            while !stop.load(ordering: .relaxed) {
                let i = Int(rng.next() % UInt64(Self.pages))
                do {
                    let bytes = try f.deviceRead(binding, base + UInt64(i) * page)
                    let index = Int(bytes[0]) | Int(bytes[1]) << 8 | Int(bytes[2]) << 16 | Int(bytes[3]) << 24
                    if index != i || bytes[15] != 0xA5 { problems.note("GPU reader: page \(i) holds \(bytes)") }
                } catch {
                    problems.note("GPU reader page \(i): \(error)")
                }
            }
        }
        let migrator = f.machine.sync.spawnThread(named: "migrator") {
            var rng = SplitMix64(seed: testSeed &+ 29)
            while !stop.load(ordering: .relaxed) {
                let window = base + (rng.next() % UInt64(Self.pages / 16)) * 16 * page
                do {
                    try f.gpu.migrate(binding, deviceAddress: window, length: 16 * page, toDevice: rng.next() % 3 != 0)
                } catch {
                    problems.note("migrate 0x\(String(window, radix: 16)): \(error)")
                }
            }
        }
        for writer in writers { writer.join() }
        stop.store(true, ordering: .relaxed)
        reader.join()
        migrator.join()
        f.machine.stopBackgroundReclaim()

        let expected = finals.withLock { $0 }
        for i in 0..<Self.pages {
            let bytes = try f.space.read(base + UInt64(i) * page)
            if bytes != tag(i, expected[i]) { problems.note("final page \(i): \(bytes), expected v\(expected[i])") }
        }
        let seen = problems.all
        #expect(seen == [], "seed \(testSeed)")
        #expect(f.stat("migrations") > 0 && f.stat("invalidations") > 0, "the storm migrated and invalidated")
        #expect(f.machine.statistics.evictedAnonymous.load(ordering: .relaxed) > 0, "memory was tight enough to swap")
        let counters = f.gpu.statistics().filter { $0.value > 0 }.map { "\($0.name) \($0.value)" }.joined(separator: ", ")
        print("GPU storm (seed \(testSeed), \(rounds) rounds per writer): \(counters); "
            + "swapped out \(f.machine.statistics.evictedAnonymous.load(ordering: .relaxed))")
        let problemsAtEnd = f.finish()
        #expect(problemsAtEnd == [], "seed \(testSeed)")
    }
}
