import LabSync
import MMUNotifier
import PluginHost
import Testing
import TestSupport
import VirtualMemory

/// GPU atomics on system memory (ABI 1.5): each takes its page exclusive
/// (make_device_exclusive) and maps it so; the GPU skips its own
/// conversion and follows the CPU taking the page back.
@Suite("GPU plugin: atomics through device-exclusive pages")
struct AtomicTests {
    func atomic(_ f: GPUFixture, _ binding: PluginInstance.Binding, _ address: UInt64, _ bytes: [UInt8]) throws {
        var copy = bytes
        try copy.withUnsafeMutableBytes { try f.gpu.access(binding, deviceAddress: address, write: true, atomic: true, buffer: $0) }
    }

    @Test func anAtomicTakesThePageExclusiveAndTheCPUTakesItBack() throws {
        let f = try GPUFixture()
        let (base, binding) = try f.mapAndBind(pages: 16)
        try f.space.write(base, tag(0, 1))
        try atomic(f, binding, base, tag(0, 2))
        #expect(f.space.translate(base).isDeviceExclusive)
        #expect(f.stat("exclusive taken") == 1 && f.stat("own exclusive skipped") == 1 && f.stat("atomics") == 1)
        // More atomics on the page go through the same exclusive entry.
        try atomic(f, binding, base, tag(0, 3))
        #expect(f.stat("exclusive taken") == 1 && f.stat("atomics") == 2)
        // The CPU reads: the page comes back with the GPU's last atomic.
        #expect(try f.space.read(base) == tag(0, 3))
        #expect(!f.space.translate(base).isDeviceExclusive)
        // The GPU followed: its next atomic takes the page again.
        try atomic(f, binding, base, tag(0, 4))
        #expect(f.stat("exclusive taken") == 2)
        // Plain GPU reads of an exclusive page are fine; the CPU sees the data.
        #expect(try f.deviceRead(binding, base) == tag(0, 4))
        #expect(try f.space.read(base) == tag(0, 4))
        #expect(f.machine.statistics.exclusiveGivenBack.load(ordering: .relaxed) == 2)
        #expect(f.finish() == [])
    }

    @Test func atomicsRacingCPUWritesKeepEveryWriteAndBreakNoRule() throws {
        let f = try GPUFixture()
        let pages = 8
        let (base, binding) = try f.mapAndBind(pages: pages)
        // The GPU owns the even pages, the CPU the odd ones; both read everything.
        let stop = SpinLocked(false, name: "stop", domain: f.machine.sync)
        let problems = Problems(sync: f.machine.sync)
        let cpu = f.machine.sync.spawnThread(named: "cpu") {
            var version: UInt32 = 0
            while !stop.withLock({ $0 }) {
                version += 1
                for p in stride(from: 1, to: pages, by: 2) { try? f.space.write(base + UInt64(p) * page, tag(p, version)) }
                for p in stride(from: 0, to: pages, by: 2) { _ = try? f.space.read(base + UInt64(p) * page) }
            }
        }
        for round in 1...(200 * stressScale) {
            for p in stride(from: 0, to: pages, by: 2) {
                do { try atomic(f, binding, base + UInt64(p) * page, tag(p, UInt32(round))) } catch { problems.note("atomic: \(error)") }
            }
            for p in stride(from: 0, to: pages, by: 2) {
                if let read = try? f.deviceRead(binding, base + UInt64(p) * page), read != tag(p, UInt32(round)) {
                    problems.note("page \(p) round \(round): the GPU read \(read)")
                }
            }
        }
        stop.withLock { $0 = true }
        cpu.join()
        for p in stride(from: 0, to: pages, by: 2) { #expect(try f.space.read(base + UInt64(p) * page) == tag(p, UInt32(200 * stressScale))) }
        #expect(problems.all.isEmpty, "\(problems.all)")
        #expect(f.stat("exclusive taken") > 0)
        #expect(f.finish() == [])
    }
}
