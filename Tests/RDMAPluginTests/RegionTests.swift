import PluginHost
import Testing
import VirtualMemory

/// Memory regions one operation at a time: registration, keys and access
/// flags, on-demand faults and invalidations, implicit regions, prefetch.
@Suite("RDMA plugin: memory regions")
struct RegionTests {
    @Test func theNICLoadsAndSaysWhatItDoes() throws {
        let plugin = try PluginLoader.load(rdmaPluginPath).get()
        #expect(plugin.name == "rdma")
        #expect(plugin.capabilities & UInt32(1 << 3) != 0, "declares MMULAB_CAP_FAILS_NONBLOCKING: it answers retry to the OOM reaper")
        #expect(plugin.optionalOperations == ["prefetch", "stats"], "no migrate: a NIC has no device memory")
    }

    @Test func remoteWritesAndReadsMeetTheCPUsData() throws {
        let f = try RDMAFixture()
        let (base, region) = try f.mapAndBind(pages: 64)
        for i in 0..<32 { try f.space.write(base + UInt64(i) * page, tag(i, 1)) }
        for i in 0..<32 { #expect(try f.deviceRead(region, base + UInt64(i) * page) == tag(i, 1)) }
        for i in 32..<64 { try f.deviceWrite(region, base + UInt64(i) * page, tag(i, 2)) }
        for i in 32..<64 { #expect(try f.space.read(base + UInt64(i) * page) == tag(i, 2)) }
        #expect(f.stat("remote reads") == 32 && f.stat("remote writes") == 32)
        #expect(f.stat("page faults") == 4, "a fault resolves 16 pages at once: 64 pages, 4 faults")
        #expect(f.stat("pages faulted") == 64)
        #expect(f.finish() == [])
    }

    @Test func remotePeersUseTheRegionsIOVAAndItsAccessFlags() throws {
        let f = try RDMAFixture()
        let base = try f.space.map(length: 8 * page, kind: .anonymousPrivate)
        let iova: UInt64 = 0x7000_0000
        let readOnly = try f.nic.attach(addressSpace: f.space.id, start: base, length: 8 * page, deviceAddress: iova, write: false)
        try f.space.write(base + 3 * page, tag(3, 7))
        #expect(try f.deviceRead(readOnly, iova + 3 * page) == tag(3, 7), "iova + offset reaches start + offset")
        #expect {
            try f.deviceWrite(readOnly, iova, tag(0, 1))
        } throws: { "\($0)".contains("REMOTE_WRITE") }
        #expect {
            try f.deviceRead(readOnly, iova + 8 * page)
        } throws: { "\($0)".contains("outside the region") }
        #expect {
            _ = try f.deviceRead(readOnly, base)  // the CPU address is not the iova
        } throws: { "\($0)".contains("remote access error") }
        #expect(f.stat("remote access errors") == 3)
        #expect(try f.space.read(base)[15] == 0, "the refused write wrote nothing")
        #expect(f.finish() == [])
    }

    @Test func registrationsThatCannotWorkAreRefused() throws {
        let f = try RDMAFixture()
        let base = try f.space.map(length: 4 * page, kind: .anonymousPrivate)
        #expect(throws: PluginCallError.self) { try f.nic.attach(addressSpace: f.space.id, start: base + 1, length: page) }
        #expect(throws: PluginCallError.self) { try f.nic.attach(addressSpace: f.space.id, start: base, length: 0) }
        // A pinned region needs every page present: a hole fails it, and no pin stays behind.
        try f.space.unmap(start: base + 3 * page, length: page)
        #expect {
            try f.nic.attach(addressSpace: f.space.id, start: base, length: 4 * page, pinned: true)
        } throws: { "\($0)".contains("pin") }
        #expect(f.stat("pinned pages") == 0)
        #expect {
            try f.nic.attach(addressSpace: f.space.id, start: 0, length: wholeAddressSpace, pinned: true)
        } throws: { "\($0)".contains("implicit") }
        #expect {
            try f.nic.attach(addressSpace: f.space.id, start: 0, length: wholeAddressSpace, deviceAddress: 0x1000)
        } throws: { "\($0)".contains("iova") }
        #expect {
            try f.nic.attach(addressSpace: f.space.id, start: UInt64.max & ~4095, length: 8 * page)
        } throws: { "\($0)".contains("2^47") }
        #expect(f.finish() == [])
    }

    @Test func badOptionsAreRefusedWithTheReason() throws {
        let machine = Machine(.init(memory: .init(frames: 64), swapSlots: 64))
        let plugin = try PluginLoader.load(rdmaPluginPath).get()
        for options in ["dma-us=-1", "fault-pages=3", "colour=blue", "dma-engines", "dma-engines=0", "dma-us=1,dma-us=2"] {
            guard case .failure(let error) = PluginInstance.create(plugin, machine: machine, options: options) else {
                Issue.record("options '\(options)' were accepted")
                continue
            }
            #expect("\(error)".contains("option"), "\(error)")
        }
    }

    /// Reclaim takes a page the NIC had: the region's invalidation zaps the
    /// entry, the next remote read faults it back from swap.
    @Test func anInvalidatedPageIsFaultedBackOnTheNextRemoteRead() throws {
        let f = try RDMAFixture()
        let (base, region) = try f.mapAndBind(pages: 16)
        for i in 0..<16 { try f.deviceWrite(region, base + UInt64(i) * page, tag(i, 3)) }
        let faults = f.stat("page faults")
        #expect(try f.machine.pageOut(f.space, start: base, length: 16 * page) == 16)
        #expect(f.stat("invalidations") >= 1 && f.stat("pages zapped") == 16)
        #expect(f.stat("pages dirtied") == 16, "every page the NIC wrote was reported dirty when it went")
        for i in 0..<16 { #expect(try f.deviceRead(region, base + UInt64(i) * page) == tag(i, 3)) }
        #expect(f.stat("page faults") == faults + 1)
        #expect(f.finish() == [])
    }

    @Test func prefetchFaultsTheRangeInAhead() throws {
        let f = try RDMAFixture()
        let (base, region) = try f.mapAndBind(pages: 64)
        try f.nic.prefetch(region, deviceAddress: base, length: 64 * page)
        #expect(f.stat("pages faulted") == 64 && f.stat("prefetches") == 1)
        let faults = f.stat("page faults")
        for i in 0..<64 { _ = try f.deviceRead(region, base + UInt64(i) * page) }
        #expect(f.stat("page faults") == faults, "the remote reads found every page present")
        #expect(throws: PluginCallError.self) { try f.nic.prefetch(region, deviceAddress: base + 60 * page, length: 8 * page) }
        #expect(f.finish() == [])
    }

    /// An implicit region makes a child (with its own interval notifier)
    /// per chunk on the first fault in it, and frees a child once an
    /// invalidation has emptied it (mlx5's implicit MR).
    @Test func anImplicitRegionMakesChildrenPerChunkAndFreesEmptyOnes() throws {
        let f = try RDMAFixture(options: "implicit-chunk=16")
        let base: UInt64 = 0x50_0000_0000
        _ = try f.space.map(length: 64 * page, kind: .anonymousPrivate, at: base)
        let region = try f.registerImplicit()
        #expect(f.stat("implicit regions") == 1 && f.stat("implicit children") == 0, "nothing is made before a fault")
        try f.deviceWrite(region, base, tag(0, 1))
        try f.deviceWrite(region, base + 40 * page, tag(40, 1))
        #expect(f.stat("implicit children") == 2 && f.stat("children created") == 2)
        #expect(f.machine.addressSpace(f.space.id).map { $0.notifiers.intervalCount } == 2, "one interval notifier per child")

        // Unmapping the second child's chunk empties it; the next fault frees it.
        try f.space.unmap(start: base + 32 * page, length: 16 * page)
        try f.deviceWrite(region, base + 8 * page, tag(8, 1))
        #expect(f.stat("children freed") == 1 && f.stat("implicit children") == 1)
        #expect(f.machine.addressSpace(f.space.id).map { $0.notifiers.intervalCount } == 1)
        #expect(try f.space.read(base + 8 * page) == tag(8, 1))
        #expect(throws: PluginCallError.self, "unmapped memory is a remote access error") {
            try f.deviceWrite(region, base + 40 * page, tag(40, 2))
        }

        // Probes of unmapped chunks fail and leave no child behind.
        for chunk in 0..<5 {
            #expect(throws: PluginCallError.self) { try f.deviceRead(region, 0x60_0000_0000 + UInt64(chunk) * 16 * page) }
        }
        _ = try f.deviceRead(region, base)
        #expect(f.stat("implicit children") == 1, "children made by failed probes are freed")
        #expect(f.machine.addressSpace(f.space.id).map { $0.notifiers.intervalCount } == 1)
        #expect(f.finish() == [])
    }
}
