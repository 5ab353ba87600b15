import LabSync
import MMUNotifier
import PluginHost
import Testing
import TestSupport
import VirtualMemory

/// The GPU plugin, loaded with dlopen, through the cases of Linux's
/// tools/testing/selftests/mm/hmm-tests.c: the device reads, writes,
/// respects protection, survives fork, migrates to its memory and back,
/// and races munmap. Every test ends by checking that nothing leaked and
/// no violation was recorded.
@Suite("GPU plugin: hmm-tests cases")
struct HMMStyleTests {
    @Test func read() throws {
        let f = try GPUFixture()
        let (base, binding) = try f.mapAndBind(pages: 64)
        for i in 0..<64 { try f.space.write(base + UInt64(i) * page, tag(i, 1)) }
        for i in 0..<64 { #expect(try f.deviceRead(binding, base + UInt64(i) * page) == tag(i, 1)) }
        #expect(f.stat("dma reads") == 64)
        #expect(f.stat("faults") >= 1 && f.stat("faults") <= 64, "ranges are faulted as chunks, not page by page")
        #expect(f.stat("tlb misses") >= 1)
        #expect(f.finish() == [])
    }

    @Test func write() throws {
        let f = try GPUFixture()
        let (base, binding) = try f.mapAndBind(pages: 32)
        for i in 0..<32 { try f.deviceWrite(binding, base + UInt64(i) * page, tag(i, 2)) }
        // Swap everything out and back: the GPU's writes survive the round trip.
        _ = try f.machine.pageOut(f.space, start: base, length: 32 * page)
        #expect(f.machine.statistics.evictedAnonymous.load(ordering: .relaxed) > 0)
        for i in 0..<32 { #expect(try f.space.read(base + UInt64(i) * page) == tag(i, 2)) }
        #expect(f.stat("dma writes") == 32)
        #expect(f.finish() == [])
    }

    @Test func readOnlyBindingAndReadOnlyMapping() throws {
        let f = try GPUFixture()
        let (base, binding) = try f.mapAndBind(pages: 4, write: false)
        try f.space.write(base, tag(0, 1))
        #expect(try f.deviceRead(binding, base) == tag(0, 1))
        #expect(throws: PluginCallError.self) { try f.deviceWrite(binding, base, tag(0, 9)) }

        let readOnly = try f.space.map(length: 4 * page, kind: .anonymousPrivate, protection: .read)
        let second = try f.gpu.attach(addressSpace: f.space.id, start: readOnly, length: 4 * page)
        #expect(try f.deviceRead(second, readOnly) == [UInt8](repeating: 0, count: 16))
        let error = #expect(throws: PluginCallError.self) { try f.deviceWrite(second, readOnly, tag(0, 9)) }
        #expect(error?.message.contains("protection fault") == true, "\(String(describing: error))")
        #expect(try f.space.read(base) == tag(0, 1))
        #expect(f.finish() == [])
    }

    @Test func mprotect() throws {
        let f = try GPUFixture()
        let (base, binding) = try f.mapAndBind(pages: 8)
        try f.deviceWrite(binding, base, tag(0, 1))
        let flushes = f.stat("tlb flushes")
        try f.space.protect(start: base, length: 8 * page, .read)
        #expect(f.stat("tlb flushes") > flushes, "mprotect's invalidation flushes the GPU TLB")
        #expect(throws: PluginCallError.self) { try f.deviceWrite(binding, base, tag(0, 2)) }
        #expect(try f.deviceRead(binding, base) == tag(0, 1))
        try f.space.protect(start: base, length: 8 * page, .readWrite)
        try f.deviceWrite(binding, base, tag(0, 3))
        #expect(try f.space.read(base) == tag(0, 3))
        #expect(f.finish() == [])
    }

    @Test func forkCopyOnWrite() throws {
        let f = try GPUFixture()
        let (base, binding) = try f.mapAndBind(pages: 8)
        for i in 0..<8 { try f.space.write(base + UInt64(i) * page, tag(i, 1)) }
        for i in 0..<8 { _ = try f.deviceRead(binding, base + UInt64(i) * page) }
        let child = try f.space.fork()
        // The GPU writes the parent: the write-protect invalidation made its
        // entries read-only, so the write faults and breaks COW in the parent.
        for i in 0..<8 { try f.deviceWrite(binding, base + UInt64(i) * page, tag(i, 2)) }
        try child.write(base, tag(0, 7))
        for i in 0..<8 {
            #expect(try f.space.read(base + UInt64(i) * page) == tag(i, 2))
            #expect(try child.read(base + UInt64(i) * page) == (i == 0 ? tag(0, 7) : tag(i, 1)), "the child keeps its own copy")
        }
        #expect(f.finish() == [])
    }

    @Test func migrate() throws {
        let f = try GPUFixture()
        let (base, binding) = try f.mapAndBind(pages: 16)
        for i in 0..<16 { try f.space.write(base + UInt64(i) * page, tag(i, 1)) }
        #expect(try f.deviceRead(binding, base) == tag(0, 1), "the GPU maps system memory first")
        try f.gpu.migrate(binding, deviceAddress: base, length: 16 * page, toDevice: true)
        #expect(f.stat("migrations") == 16)
        #expect(f.stat("vram pages used") == 16)
        #expect((0..<16).allSatisfy { f.space.translate(base + UInt64($0) * page).isDevicePrivate })
        for i in 0..<16 { #expect(try f.deviceRead(binding, base + UInt64(i) * page) == tag(i, 1), "read from VRAM") }
        #expect(f.stat("own migrations skipped") >= 1, "the GPU ignored the invalidation its own migration caused")
        #expect(f.finish() == [])
    }

    @Test func migrateThenCPUFault() throws {
        let f = try GPUFixture()
        let (base, binding) = try f.mapAndBind(pages: 8)
        for i in 0..<8 { try f.space.write(base + UInt64(i) * page, tag(i, 1)) }
        try f.gpu.migrate(binding, deviceAddress: base, length: 8 * page, toDevice: true)
        for i in 0..<8 { try f.deviceWrite(binding, base + UInt64(i) * page, tag(i, 2)) }
        // The CPU touches the pages: each faults home with the GPU's data.
        for i in 0..<8 { #expect(try f.space.read(base + UInt64(i) * page) == tag(i, 2)) }
        #expect(f.stat("vram pages used") == 0)
        #expect(!f.space.translate(base).isDevicePrivate)
        for i in 0..<8 { #expect(try f.deviceRead(binding, base + UInt64(i) * page) == tag(i, 2), "the GPU refaults to system memory") }
        #expect(f.finish() == [])
    }

    @Test func repeatedMigration() throws {
        let f = try GPUFixture()
        let (base, binding) = try f.mapAndBind(pages: 8)
        for i in 0..<8 { try f.space.write(base + UInt64(i) * page, tag(i, 0)) }
        for round in 1...10 {
            try f.gpu.migrate(binding, deviceAddress: base, length: 8 * page, toDevice: true)
            for i in 0..<8 { try f.deviceWrite(binding, base + UInt64(i) * page, tag(i, UInt32(round))) }
            try f.gpu.migrate(binding, deviceAddress: base, length: 8 * page, toDevice: false)
            for i in 0..<8 { #expect(try f.space.read(base + UInt64(i) * page) == tag(i, UInt32(round)), "round \(round)") }
        }
        #expect(f.stat("migrations") == 80)
        #expect(f.stat("migrations to host") == 80)
        #expect(f.finish() == [])
    }

    @Test func vramPressureEvictsTheOldestPages() throws {
        let f = try GPUFixture(options: "vram=8")
        let (base, binding) = try f.mapAndBind(pages: 16)
        for i in 0..<16 { try f.space.write(base + UInt64(i) * page, tag(i, 1)) }
        try f.gpu.migrate(binding, deviceAddress: base, length: 8 * page, toDevice: true)
        try f.gpu.migrate(binding, deviceAddress: base + 8 * page, length: 8 * page, toDevice: true)
        #expect(f.stat("vram evictions") == 8)
        #expect(!f.space.translate(base).isDevicePrivate && f.space.translate(base + 8 * page).isDevicePrivate)
        for i in 0..<16 { #expect(try f.deviceRead(binding, base + UInt64(i) * page) == tag(i, 1)) }
        for i in 0..<16 { #expect(try f.space.read(base + UInt64(i) * page) == tag(i, 1)) }
        #expect(f.finish() == [])
    }

    /// The host, not the plugin, is the last word: pages still in VRAM when
    /// the instance goes (here moved away from the binding by mremap, so the
    /// GPU's detach cannot see them) are brought home after destroy.
    @Test func destroyBringsEveryVRAMPageHome() throws {
        let f = try GPUFixture()
        let (base, binding) = try f.mapAndBind(pages: 4)
        for i in 0..<4 { try f.space.write(base + UInt64(i) * page, tag(i, 1)) }
        try f.gpu.migrate(binding, deviceAddress: base, length: 4 * page, toDevice: true)
        let moved: UInt64 = 0x30_0000_0000
        try f.space.remap(from: base, length: 4 * page, to: moved)
        #expect(f.space.translate(moved).isDevicePrivate)
        f.gpu.destroy()
        for i in 0..<4 {
            #expect(!f.space.translate(moved + UInt64(i) * page).isDevicePrivate)
            #expect(try f.space.read(moved + UInt64(i) * page) == tag(i, 1))
        }
        #expect(f.finish() == [])
    }

    @Test func twoMegabyteEntriesAreUsedAndDroppedWhole() throws {
        let f = try GPUFixture()
        let (base, binding) = try f.mapAndBind(pages: 1024, aligned: true)
        try f.space.populate(start: base, length: 1024 * page, write: true)
        _ = try f.deviceRead(binding, base)
        #expect(f.stat("2M mappings") == 1, "one fault maps the aligned 2 MiB chunk with one entry")
        #expect(f.stat("ranges created") == 1)
        // Unmapping one page zaps the whole range; the collector removes it
        // and the GPU refaults the rest with smaller chunks.
        try f.space.unmap(start: base + 5 * page, length: page)
        #expect(try f.deviceRead(binding, base) == [UInt8](repeating: 0, count: 16))
        #expect(f.stat("ranges collected") >= 1)
        #expect(throws: PluginCallError.self) { _ = try f.deviceRead(binding, base + 5 * page) }
        #expect(f.finish() == [])
    }
}
