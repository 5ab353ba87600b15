import LabSync
import PluginHost
import Testing
import TestSupport
import VirtualMemory

/// Device-private memory through the Linux shim: memremap_pages of a
/// MEMORY_DEVICE_PRIVATE pagemap, migrate_vma_setup/pages/finalize both
/// ways on the host's migrate_to_device / migrate_to_host, the pagemap's
/// migrate_to_ram on a CPU fault (ABI 1.6), and hmm_range_fault's
/// dev_private_owner.
@Suite("Linux shim: dev_pagemap and migrate_vma")
struct LinuxShimMigrationTests {
    /// probe.h's `enum probe_migrate_op`.
    enum Op: UInt64 { case remap = 1, toDevice, toRAM, unmap, hmm, ramFaults }
    static let EINVAL: Int64 = -22

    func isDevicePrivate(_ probe: ShimProbe, _ page: Int) -> Bool { probe.space.translate(probe.address(page)).isDevicePrivate }
    func lastOwnerIsProbe(_ probe: ShimProbe) throws -> Int64 { try probe.run(.exclusive, [LinuxShimExclusiveTests.Op.owner.rawValue]).result }

    /// To the device: the present pages are selected (a hole is not), a
    /// pinned one is not moved (its MIGRATE bit is cleared by
    /// migrate_vma_pages), the rest become device-private in the primary's
    /// table under a migrate invalidation naming the pagemap's owner.
    /// hmm_range_fault with that owner reports them as device-private pages
    /// of the pagemap; without it brings the page home. Back to RAM with
    /// the owner moves the rest home, data intact.
    @Test func pagesGoToTheDeviceAndComeBack() throws {
        let probe = try ShimProbe()
        for page in 0..<4 { try probe.space.write(probe.address(page), payload(page, 1)) }
        #expect(try probe.run(.pin, [probe.address(2), 1, 1]).result == 1)
        #expect(try probe.run(.migrate, [Op.remap.rawValue, 0, 8]).result == 0)

        let before = try probe.run(.intervalState).result
        let moved = try probe.run(.migrate, [Op.toDevice.rawValue, probe.base, 5])
        #expect(moved.result == 0, "\(moved)")
        #expect(moved.arguments[0] == 4 && moved.arguments[1] == 0b1111, "pages 0..3 selected, the hole (4) not: \(moved)")
        #expect(moved.arguments[3] == 0b1111, "mapped writable: MIGRATE_PFN_WRITE")
        #expect(moved.arguments[2] == 0b1011, "the pinned page 2 did not move: \(String(moved.arguments[2], radix: 2))")
        #expect([0, 1, 3].allSatisfy { isDevicePrivate(probe, $0) } && !isDevicePrivate(probe, 2))
        let state = try probe.run(.intervalState)
        #expect(state.result > before && state.arguments[0] == ShimProbe.Event.migrate.rawValue, "\(state)")
        #expect(try lastOwnerIsProbe(probe) == 1, "the invalidation names the pagemap's owner")

        let own = try probe.run(.migrate, [Op.hmm.rawValue, probe.address(0), 0, 0])
        #expect(own.result == 0 && own.arguments[0] == 1 && own.arguments[1] == 1, "a device-private page of the pagemap: \(own)")
        #expect(isDevicePrivate(probe, 0), "the owner's fault leaves it on the device")
        #expect(try probe.run(.kmapRead, [4, 1]).bytes == payload(0, 1), "the device reads its page")

        let foreign = try probe.run(.migrate, [Op.hmm.rawValue, probe.address(1), 0, 1])
        #expect(foreign.result == 0 && foreign.arguments[0] == 0 && foreign.arguments[1] == 0, "brought home: \(foreign)")
        #expect(!isDevicePrivate(probe, 1))

        #expect(try probe.run(.migrate, [Op.toRAM.rawValue, probe.base, 4, 1]).arguments[0] == 0, "another owner selects nothing")
        let home = try probe.run(.migrate, [Op.toRAM.rawValue, probe.base, 4, 0])
        #expect(home.result == 0 && home.arguments[0] == 2 && home.arguments[2] == 0b1001, "pages 0 and 3 come home: \(home)")
        #expect((0..<4).allSatisfy { !isDevicePrivate(probe, $0) })
        for page in 0..<4 { #expect(try probe.space.read(probe.address(page)) == payload(page, 1), "page \(page)") }
        try probe.run(.unpin, [0])
        #expect(probe.reports.isEmpty && probe.machine.violations.count == 0, "\(probe.reports) \(probe.machine.violations.snapshot)")
        probe.instance.destroy()
    }

    /// A CPU access to a device page calls the pagemap's migrate_to_ram
    /// (ABI 1.6), with the fault's address and the device page, which
    /// migrates it home with migrate_vma: the invalidation names the owner.
    /// A device access through the old device page is then a stale
    /// translation.
    @Test func aCPUAccessCallsThePagemapsMigrateToRAM() throws {
        let probe = try ShimProbe()
        try probe.space.write(probe.address(0), payload(0, 1))
        #expect(try probe.run(.migrate, [Op.remap.rawValue, 0, 4]).result == 0)
        #expect(try probe.run(.migrate, [Op.toDevice.rawValue, probe.base, 1]).arguments[2] == 1)
        #expect(try probe.run(.migrate, [Op.hmm.rawValue, probe.address(0), 0, 0]).arguments[0] == 1)
        #expect(try probe.run(.migrate, [Op.ramFaults.rawValue]).result == 0)
        let before = try probe.run(.intervalState).result
        #expect(try probe.space.read(probe.address(0)) == payload(0, 1), "the data came home")
        #expect(!isDevicePrivate(probe, 0))
        let fault = try probe.run(.migrate, [Op.ramFaults.rawValue])
        #expect(fault.result == 1 && fault.arguments[0] == probe.address(0) && fault.arguments[1] == 1, "\(fault)")
        let state = try probe.run(.intervalState)
        #expect(state.result > before && state.arguments[0] == ShimProbe.Event.migrate.rawValue, "\(state)")
        #expect(try lastOwnerIsProbe(probe) == 1, "migrate_to_ram's migration names the owner, which skips it")
        _ = try probe.run(.kmapRead, [4, 1])
        let found = probe.violations(at: probe.address(0))
        #expect(found.contains(.staleTranslation) || found.contains(.useAfterFree), "\(found)")
        #expect(probe.reports.isEmpty, "\(probe.reports)")
        probe.instance.destroy()
    }

    /// hmm_range_fault with a dev_private_owner that does not claim the
    /// page faults it home through migrate_to_ram, as Linux's does.
    @Test func hmmRangeFaultOfAnUnclaimedDevicePageCallsMigrateToRAM() throws {
        let probe = try ShimProbe()
        try probe.space.write(probe.address(0), payload(0, 1))
        #expect(try probe.run(.migrate, [Op.remap.rawValue, 0, 4]).result == 0)
        #expect(try probe.run(.migrate, [Op.toDevice.rawValue, probe.base, 1]).arguments[2] == 1)
        let foreign = try probe.run(.migrate, [Op.hmm.rawValue, probe.address(0), 0, 1])
        #expect(foreign.result == 0 && foreign.arguments[0] == 0, "\(foreign)")
        #expect(try probe.run(.migrate, [Op.ramFaults.rawValue]).result == 1)
        #expect(try lastOwnerIsProbe(probe) == 1)
        #expect(try probe.space.read(probe.address(0)) == payload(0, 1))
        probe.instance.destroy()
    }

    /// A migrate_to_ram that fails (VM_FAULT_SIGBUS), or none: the host
    /// brings the page home itself, with an invalidation that names no
    /// owner (the driver hears MMU_NOTIFY_CLEAR and drops its entry).
    @Test(arguments: [2, 3] as [UInt64])
    func withoutAWorkingMigrateToRAMTheHostBringsThePageHome(ops: UInt64) throws {
        let probe = try ShimProbe()
        try probe.space.write(probe.address(0), payload(0, 1))
        #expect(try probe.run(.migrate, [Op.remap.rawValue, 0, 4, ops]).result == 0)
        #expect(try probe.run(.migrate, [Op.toDevice.rawValue, probe.base, 1]).arguments[2] == 1)
        let before = try probe.run(.intervalState).result
        #expect(try probe.space.read(probe.address(0)) == payload(0, 1))
        #expect(!isDevicePrivate(probe, 0))
        #expect(try probe.run(.migrate, [Op.ramFaults.rawValue]).result == (ops == 2 ? 1 : 0), "called only if there is one")
        let state = try probe.run(.intervalState)
        #expect(state.result > before && state.arguments[0] == ShimProbe.Event.clear.rawValue, "\(state)")
        #expect(try lastOwnerIsProbe(probe) == 0, "no owner")
        probe.instance.destroy()
    }

    /// memremap_pages refuses what it does not provide, a second pagemap is
    /// busy, memunmap_pages brings every page home, and with no pagemap
    /// migrate_vma selects nothing.
    @Test func memremapPagesAndMemunmapPages() throws {
        let probe = try ShimProbe()
        for page in 0..<2 { try probe.space.write(probe.address(page), payload(page, 1)) }
        #expect(try probe.run(.migrate, [Op.toDevice.rawValue, probe.base, 2]).arguments[0] == 0, "no device memory: nothing selected")
        #expect(try probe.run(.migrate, [Op.remap.rawValue, 0, 4, 1]).result == Self.EINVAL, "no owner")
        #expect(try probe.run(.migrate, [Op.remap.rawValue, 0, 4]).result == 0)
        #expect(try probe.run(.migrate, [Op.remap.rawValue, 0, 4]).result == ShimProbe.EBUSY, "one pagemap a device")
        #expect(try probe.run(.migrate, [Op.toDevice.rawValue, probe.base, 2]).arguments[2] == 0b11)
        try probe.run(.migrate, [Op.unmap.rawValue])
        #expect(!isDevicePrivate(probe, 0) && !isDevicePrivate(probe, 1), "memunmap_pages brought them home")
        for page in 0..<2 { #expect(try probe.space.read(probe.address(page)) == payload(page, 1)) }
        #expect(try probe.run(.migrate, [Op.remap.rawValue, 0, 4]).result == 0, "the same owner maps the memory again")
        probe.instance.destroy()
    }
}
