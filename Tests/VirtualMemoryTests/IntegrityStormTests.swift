import TestSupport
import LabSync
import MMUNotifier
import Synchronization
import Testing
@testable import VirtualMemory

/// The data-integrity storm of the issue: CPU writers, an in-process mirror
/// device per address space doing checked DMA, and reclaim, migration,
/// KSM, munmap/mmap churn and fork on other threads, with memory
/// oversubscribed. At the end: no violation, nothing lost, no address space
/// saw another's data, every frame and swap slot free.
@Suite("Integrity under pressure")
struct IntegrityStormTests {
    static let spaces = 3
    static let cpuPages = 160
    static let devicePages = 32
    static let mergePages = 8

    final class Findings: @unchecked Sendable {
        let log: SpinLocked<[String]>
        init(sync: SyncDomain) { log = SpinLocked([], name: "findings", domain: sync) }
        func add(_ s: String) { log.withLock { if $0.count < 50 { $0.append(s) } } }
        var all: [String] { log.withLock { $0 } }
    }

    struct Layout {
        let space: AddressSpace
        let device: MirrorDevice
        let cpu: UInt64
        let deviceOwned: UInt64
        let merge: UInt64
    }

    @Test func nothingIsLostOrStaleUnderReclaimMigrationKSMMunmapAndFork() throws {
        let seed = testSeed
        let machine = makeMachine(frames: 384, nodes: 2, swapSlots: 4096)
        let sync = machine.sync
        let findings = Findings(sync: sync)
        machine.startBackgroundReclaim()
        let mergeContent = [UInt8](repeating: 0xAB, count: 16)

        var layouts: [Layout] = []
        for index in 0..<Self.spaces {
            let space = machine.makeAddressSpace()
            let device = MirrorDevice("mirror-\(index)", machine: machine, space: space)
            try space.notifiers.register(device)
            let cpu = try space.map(length: UInt64(Self.cpuPages) * page, kind: .anonymousPrivate)
            let owned = try space.map(length: UInt64(Self.devicePages) * page, kind: .anonymousPrivate)
            let merge = try space.map(length: UInt64(Self.mergePages) * page, kind: .anonymousPrivate)
            for i in 0..<Self.mergePages { try space.write(merge + UInt64(i) * page, mergeContent) }
            try space.adviseMergeable(start: merge, length: UInt64(Self.mergePages) * page)
            layouts.append(Layout(space: space, device: device, cpu: cpu, deviceOwned: owned, merge: merge))
        }

        let layoutsFixed = layouts
        let iterations = 1_500 * stressScale
        let stop = Atomic<Bool>(false)
        var threads: [any ThreadHandle] = []

        // CPU writers: one per address space, the only writer of its CPU region.
        for (index, layout) in layoutsFixed.enumerated() {
            threads.append(sync.spawnThread(named: "cpu-\(index)") {
                var rng = SplitMix64.stream(index, of: seed)
                var expected = [UInt32](repeating: 0, count: Self.cpuPages)
                let id = UInt32(layout.space.id.rawValue)
                do {
                    for _ in 0..<iterations {
                        let p = Int.random(in: 0..<Self.cpuPages, using: &rng)
                        let address = layout.cpu + UInt64(p) * page
                        if Bool.random(using: &rng) {
                            expected[p] += 1
                            try layout.space.write(address, Tag(space: id, page: UInt32(p), writer: 0, version: expected[p]).bytes)
                        } else {
                            let got = Tag(try layout.space.read(address))
                            let want = expected[p] == 0 ? Tag(space: 0, page: 0, writer: 0, version: 0)
                                : Tag(space: id, page: UInt32(p), writer: 0, version: expected[p])
                            if got != want { findings.add("seed \(seed): CPU read \(got) at mm \(id) page \(p), wanted \(want)") }
                        }
                    }
                    for p in 0..<Self.cpuPages where expected[p] > 0 {
                        let got = Tag(try layout.space.read(layout.cpu + UInt64(p) * page))
                        if got != Tag(space: id, page: UInt32(p), writer: 0, version: expected[p]) {
                            findings.add("seed \(seed): lost write: mm \(id) page \(p) holds \(got), wanted v\(expected[p])")
                        }
                    }
                } catch {
                    findings.add("seed \(seed): CPU writer \(index) failed: \(error)")
                }
            })
        }

        // Devices: read anything (checking whose data it is), own a region they write and verify.
        for (index, layout) in layoutsFixed.enumerated() {
            threads.append(sync.spawnThread(named: "device-\(index)") {
                var rng = SplitMix64.stream(10 + index, of: seed)
                var versions = [UInt32](repeating: 0, count: Self.devicePages)
                let id = UInt32(layout.space.id.rawValue)
                do {
                    while !stop.load(ordering: .relaxed) {
                        let p = Int.random(in: 0..<Self.cpuPages, using: &rng)
                        let tag = Tag(try layout.device.read(layout.cpu + UInt64(p) * page))
                        if tag.version != 0 && (tag.space != id || tag.page != UInt32(p)) {
                            findings.add("seed \(seed): device of mm \(id) read \(tag) at page \(p): another's data")
                        }
                        let q = Int.random(in: 0..<Self.devicePages, using: &rng)
                        let owned = layout.deviceOwned + UInt64(q) * page
                        if Bool.random(using: &rng) {
                            versions[q] += 1
                            try layout.device.write(owned, Tag(space: id, page: UInt32(q), writer: 1, version: versions[q]).bytes)
                        } else if versions[q] > 0 {
                            let got = Tag(try layout.device.read(owned))
                            if got != Tag(space: id, page: UInt32(q), writer: 1, version: versions[q]) {
                                findings.add("seed \(seed): device write lost: mm \(id) page \(q) holds \(got), wanted v\(versions[q])")
                            }
                        }
                        let m = Int.random(in: 0..<Self.mergePages, using: &rng)
                        let merged = try layout.device.read(layout.merge + UInt64(m) * page)
                        if merged != mergeContent { findings.add("seed \(seed): merged page \(m) of mm \(id) changed: \(merged)") }
                    }
                } catch {
                    findings.add("seed \(seed): device \(index) failed: \(error)")
                }
            })
        }

        // The migration and KSM threads keep going until they have done
        // their work at least once, however the scheduler treats them.
        threads.append(sync.spawnThread(named: "migrate") {
            var rng = SplitMix64.stream(20, of: seed)
            var extra = 0
            while !stop.load(ordering: .relaxed)
                || (machine.statistics.migrations.load(ordering: .relaxed) == 0 && extra < 10_000)
            {
                if stop.load(ordering: .relaxed) { extra += 1 }
                let layout = layoutsFixed.randomElement(using: &rng)!
                let address = layout.cpu + UInt64(Int.random(in: 0..<Self.cpuPages, using: &rng)) * page
                _ = machine.migrate(layout.space, address: address, to: Int.random(in: 0..<2, using: &rng))
            }
        })
        threads.append(sync.spawnThread(named: "ksm") {
            var extra = 0
            while !stop.load(ordering: .relaxed)
                || (machine.statistics.ksmMerges.load(ordering: .relaxed) == 0 && extra < 100)
            {
                if stop.load(ordering: .relaxed) { extra += 1 }
                _ = machine.samePageMerger.scan()
                sync.sleep(for: .milliseconds(2))
            }
        })
        threads.append(sync.spawnThread(named: "churn") {
            var rng = SplitMix64.stream(30, of: seed)
            while !stop.load(ordering: .relaxed) {
                let layout = layoutsFixed.randomElement(using: &rng)!
                do {
                    let scratch = try layout.space.map(length: 8 * page, kind: .anonymousPrivate)
                    for i in 0..<8 { try layout.space.write(scratch + UInt64(i) * page, [UInt8(i + 1)]) }
                    for i in 0..<8 where try layout.space.read(scratch + UInt64(i) * page)[0] != UInt8(i + 1) {
                        findings.add("seed \(seed): scratch page \(i) lost its write")
                    }
                    try layout.space.unmap(start: scratch, length: 8 * page)
                } catch {
                    findings.add("seed \(seed): churn failed: \(error)")
                }
            }
        })
        threads.append(sync.spawnThread(named: "fork") {
            var rng = SplitMix64.stream(40, of: seed)
            while !stop.load(ordering: .relaxed) {
                let layout = layoutsFixed.randomElement(using: &rng)!
                do {
                    let child = try layout.space.fork()
                    let id = UInt32(layout.space.id.rawValue)
                    for _ in 0..<16 {
                        let p = Int.random(in: 0..<Self.cpuPages, using: &rng)
                        let tag = Tag(try child.read(layout.cpu + UInt64(p) * page))
                        if tag.version != 0 && (tag.space != id || tag.page != UInt32(p)) {
                            findings.add("seed \(seed): forked child of mm \(id) read \(tag) at page \(p)")
                        }
                    }
                    child.exit()
                } catch {
                    findings.add("seed \(seed): fork failed: \(error)")
                }
                sync.sleep(for: .milliseconds(1))
            }
        })

        for thread in threads.prefix(Self.spaces) { thread.join() }  // the CPU writers bound the run
        stop.store(true, ordering: .relaxed)
        for thread in threads.dropFirst(Self.spaces) { thread.join() }
        machine.stopBackgroundReclaim()

        #expect(findings.all.isEmpty, "\(findings.all.prefix(8))")
        #expect(machine.violations.count == 0, "seed \(seed): \(machine.violations.snapshot.prefix(5))")
        #expect(machine.notifierCore.contractViolations.count == 0)
        #expect(sync.contextViolations.count == 0, "\(sync.contextViolations.snapshot.prefix(3))")
        let stats = Dictionary(uniqueKeysWithValues: machine.statistics.all)
        #expect(stats["evicted anonymous", default: 0] > 0, "seed \(seed): the run never reclaimed, so it tested nothing: \(stats)")
        #expect(stats["migrations", default: 0] > 0)
        #expect(stats["KSM merges", default: 0] > 0)

        for layout in layouts { layout.space.exit() }
        machine.dropCaches()
        #expect(machine.memory.freeFrames == 384, "seed \(seed): frames leaked: \(machine.memory.allocatedFrames().prefix(8))")
        #expect(machine.swap.usedSlots == 0, "seed \(seed): swap slots leaked")
        #expect(machine.addressSpaces.isEmpty)
    }
}
