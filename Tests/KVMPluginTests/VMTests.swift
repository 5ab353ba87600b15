import LabSync
import PluginHost
import Synchronization
import Testing
import VirtualMemory

/// A VM one access at a time: memslots, guest accesses through the EPT,
/// EPT violations and the refault after an invalidation, refusals.
@Suite("KVM plugin: memslots and guest accesses")
struct VMTests {
    @Test func theKVMPluginLoadsAndSaysWhatItDoes() throws {
        let plugin = try PluginLoader.load(kvmPluginPath).get()
        #expect(plugin.name == "kvm")
        #expect(plugin.minor == 6, "built against ABI 1.6 (change_pte_pfn, control, migrate_to_host with its owner, thread services, the 1.5 events, lookup_range)")
        #expect(plugin.capabilityNames == ["changePTE", "youngTracking"])
        #expect(plugin.optionalOperations == ["stats", "control"])
    }

    @Test func guestAccessesMeetTheCPUsDataAtGuestPhysicalAddresses() throws {
        let f = try KVMFixture()
        let (hva, slot) = try f.memslot(pages: 32)
        for i in 0..<16 { try f.space.write(hva + UInt64(i) * page, tag(i, 1)) }
        for i in 0..<16 { #expect(try f.guestRead(slot, guestBase + UInt64(i) * page) == tag(i, 1)) }
        for i in 16..<32 { try f.guestWrite(slot, guestBase + UInt64(i) * page, tag(i, 2)) }
        for i in 16..<32 { #expect(try f.space.read(hva + UInt64(i) * page) == tag(i, 2)) }
        #expect(f.stat("ept violations") == 32, "one EPT violation per page")
        #expect(f.stat("pages installed") == 32)
        // Again: every translation is in the vCPU's TLB or the EPT now.
        for i in 0..<32 { _ = try f.guestRead(slot, guestBase + UInt64(i) * page) }
        #expect(f.stat("ept violations") == 32)
        #expect(f.stat("tlb hits") + f.stat("tlb misses") == 64)
        try f.command(slot, .verify)
        #expect(f.finish() == [])
    }

    @Test func aSecondMemslotAndAnAliasOfTheSameMemory() throws {
        let f = try KVMFixture()
        let (hva, low) = try f.memslot(pages: 8)
        // Another guest-physical window onto the same host pages (an alias).
        let alias = try f.instance.attach(addressSpace: f.space.id, start: hva, length: 8 * page, deviceAddress: 0x2_0000_0000, write: true)
        try f.guestWrite(low, guestBase + 2 * page, tag(2, 1))
        #expect(try f.guestRead(alias, 0x2_0000_0000 + 2 * page) == tag(2, 1), "both gfns map one host page")
        // Reclaim of the host page must zap both entries (the rmap lists two).
        #expect(try f.machine.pageOut(f.space, start: hva + 2 * page, length: page) == 1)
        #expect(f.stat("entries zapped") == 2)
        try f.guestWrite(alias, 0x2_0000_0000 + 2 * page, tag(2, 2))
        #expect(try f.guestRead(low, guestBase + 2 * page) == tag(2, 2))
        try f.command(low, .verify)
        f.instance.detach(alias)
        #expect(f.stat("memslots") == 1)
        #expect(f.finish() == [])
    }

    @Test func aReclaimedPageFaultsBackWithItsData() throws {
        let f = try KVMFixture()
        let (hva, slot) = try f.memslot(pages: 16)
        for i in 0..<16 { try f.guestWrite(slot, guestBase + UInt64(i) * page, tag(i, 1)) }
        #expect(try f.machine.pageOut(f.space, start: hva, length: 16 * page) == 16)
        #expect(f.stat("entries zapped") == 16)
        #expect(f.stat("pages dirtied") == 16, "every writable entry reported dirty as it went")
        #expect(f.stat("flush requests") >= 1)
        for i in 0..<16 { #expect(try f.guestRead(slot, guestBase + UInt64(i) * page) == tag(i, 1)) }
        #expect(f.stat("ept violations") == 32, "each page faulted once more")
        // Migration moves the page; the entry follows through a refault.
        try f.guestWrite(slot, guestBase, tag(0, 2))
        guard case .migrated = f.machine.migrate(f.space, address: hva, to: 0) else {
            Issue.record("the page did not migrate")
            return
        }
        #expect(try f.guestRead(slot, guestBase) == tag(0, 2))
        #expect(f.finish() == [])
    }

    @Test func refusedMemslotsAndAccessesSayWhy() throws {
        let f = try KVMFixture()
        let (hva, slot) = try f.memslot(pages: 8)
        #expect {
            try f.instance.attach(addressSpace: f.space.id, start: hva, length: 8 * page, deviceAddress: guestBase + 4 * page)
        } throws: { "\($0)".contains("overlaps memslot") }
        #expect {
            try f.instance.attach(addressSpace: f.space.id, start: hva + 1, length: page, deviceAddress: 0x9000_0000)
        } throws: { "\($0)".contains("page aligned") }
        #expect {
            try f.instance.attach(addressSpace: f.space.id, start: hva, length: page, deviceAddress: 0x9000_0000, pinned: true)
        } throws: { "\($0)".contains("does not pin") }
        #expect { _ = try f.guestRead(slot, 0x5000) } throws: { "\($0)".contains("in no memslot") }
        let (_, readOnly) = try f.memslot(pages: 2, at: 0x3_0000_0000, write: false)
        #expect { try f.guestWrite(readOnly, 0x3_0000_0000, tag(0, 1)) } throws: { "\($0)".contains("read-only memslot") }
        #expect(try f.guestRead(readOnly, 0x3_0000_0000) == [UInt8](repeating: 0, count: 16))
        #expect {
            try f.instance.control(slot, command: 99, argument: UnsafeMutableRawBufferPointer(start: nil, count: 0))
        } throws: { "\($0)".contains("unknown KVM command") }
        var short = [UInt64]()
        try f.command(slot, .enableDirtyLog)
        #expect { try f.command(slot, .getDirtyLog, &short) } throws: { "\($0)".contains("needs 8 bytes") }
        #expect(f.finish() == [])
    }

    @Test(arguments: [
        ("change-pte=2", "change-pte must be 0...1"), ("tlb-entries=48", "power of two"), ("vcpus=0", "vcpus must be 1...1024"),
        ("ept=1", "unknown key"),
    ])
    func badOptionsAreRefusedWithTheReason(options: String, reason: String) throws {
        let plugin = try PluginLoader.load(kvmPluginPath).get()
        let machine = Machine(.init(memory: .init(frames: 64, payloadSize: 16), swapSlots: 64))
        guard case .failure(let error) = PluginInstance.create(plugin, machine: machine, options: options) else {
            Issue.record("options '\(options)' were accepted")
            return
        }
        #expect("\(error)".contains(reason), "\(error)")
    }

    /// More threads than the VM has vCPUs: the extra one is told so.
    @Test func aThreadBeyondTheLastVCPUIsRefused() throws {
        let f = try KVMFixture(options: "vcpus=1")
        let (_, slot) = try f.memslot(pages: 1)
        try f.guestWrite(slot, guestBase, tag(0, 1))  // this thread is vCPU 0
        let refused = Atomic<Bool>(false)
        let other = f.machine.sync.spawnThread(named: "second-vcpu") {
            do { _ = try f.guestRead(slot, guestBase) } catch { refused.store("\(error)".contains("vCPUs are taken"), ordering: .relaxed) }
        }
        other.join()
        let wasRefused = refused.load(ordering: .relaxed)
        #expect(wasRefused)
        #expect(f.finish() == [])
    }

    /// Unmapping a memslot's backing zaps its entries; the guest then gets
    /// an error for those pages (KVM: -EFAULT), never the old frames.
    @Test func munmapOfAMemslotsBackingLeavesNoTranslation() throws {
        let f = try KVMFixture()
        let (hva, slot) = try f.memslot(pages: 8)
        for i in 0..<8 { try f.guestWrite(slot, guestBase + UInt64(i) * page, tag(i, 1)) }
        try f.space.unmap(start: hva + 4 * page, length: 4 * page)
        #expect(f.stat("entries zapped") == 4)
        #expect(throws: PluginCallError.self) { try f.guestRead(slot, guestBase + 5 * page) }
        #expect(try f.guestRead(slot, guestBase + 3 * page) == tag(3, 1))
        // Mapped again at the same place: fresh zero pages, not the old data.
        _ = try f.space.map(length: 4 * page, kind: .anonymousPrivate, at: hva + 4 * page)
        #expect(try f.guestRead(slot, guestBase + 5 * page) == [UInt8](repeating: 0, count: 16))
        try f.command(slot, .verify)
        #expect(f.finish() == [])
    }

    /// The address space exits with the VM still attached: `release` drops
    /// every entry, the guest's accesses fail, and nothing stays allocated.
    @Test func exitReleasesEverything() throws {
        let f = try KVMFixture()
        let (_, slot) = try f.memslot(pages: 32)
        for i in 0..<32 { try f.guestWrite(slot, guestBase + UInt64(i) * page, tag(i, 1)) }
        f.space.exit()
        #expect(f.stat("releases") == 1)
        #expect(f.stat("entries zapped") == 32)
        #expect { _ = try f.guestRead(slot, guestBase) } throws: { "\($0)".contains("exited") }
        _ = f.machine.dropCaches()
        #expect(f.machine.memory.allocatedFrames().isEmpty, "the VM kept no page alive")
        f.instance.detach(slot)
        #expect(f.stat("vms") == 0 && f.stat("memslots") == 0)
        #expect(f.finish() == [])
    }
}
