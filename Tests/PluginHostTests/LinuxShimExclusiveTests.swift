import LabSync
import PluginHost
import Testing
import TestSupport
import VirtualMemory

/// make_device_exclusive (<linux/rmap.h>) on the host's make_exclusive:
/// the page becomes exclusive to the device under an MMU_NOTIFY_EXCLUSIVE
/// invalidation carrying the caller's owner, comes back locked with a
/// reference the driver drops with folio_unlock and folio_put, and the
/// CPU's next touch takes it back with an invalidation carrying no owner.
@Suite("Linux shim: make_device_exclusive")
struct LinuxShimExclusiveTests {
    /// probe.h's `enum probe_exclusive_op`.
    enum Op: UInt64 { case make = 1, release, owner, unlock }

    @Test func thePageIsTheDevicesUntilTheCPUTouchesIt() throws {
        let probe = try ShimProbe()
        let address = probe.address(0)
        try probe.space.write(address, payload(0, 1))
        let before = try probe.run(.intervalState).result
        #expect(try probe.run(.exclusive, [Op.make.rawValue, address, 1]).result == 0)
        let made = try probe.run(.intervalState)
        #expect(made.result == before + 1 && made.arguments[0] == ShimProbe.Event.exclusive.rawValue, "\(made)")
        #expect(try probe.run(.exclusive, [Op.owner.rawValue]).result == 1, "the invalidation names the caller's owner")
        #expect(probe.space.translate(address).isDeviceExclusive)
        #expect(try probe.run(.kmapRead, [5, 1]).bytes == payload(0, 1), "the device reads through its exclusive page")
        try probe.run(.exclusive, [Op.release.rawValue])
        #expect(probe.reports.isEmpty, "folio_unlock and folio_put balance what it returned: \(probe.reports)")
        #expect(probe.machine.violations.count == 0, "\(probe.machine.violations.snapshot)")

        // The CPU touches it: it comes back with an invalidation that names no owner.
        #expect(try probe.space.read(address) == payload(0, 1))
        #expect(!probe.space.translate(address).isDeviceExclusive)
        let back = try probe.run(.intervalState)
        #expect(back.result == before + 2 && back.arguments[0] == ShimProbe.Event.exclusive.rawValue, "\(back)")
        #expect(try probe.run(.exclusive, [Op.owner.rawValue]).result == 0)
        // A device that kept the exclusive page past that is found at its next access.
        _ = try probe.run(.kmapRead, [5, 1])
        #expect(probe.violations(at: address).contains(.staleTranslation), "\(probe.violations(at: address))")
        probe.instance.destroy()
    }

    /// Without an owner the caller's own notifier hears the invalidation as
    /// another device's; an unmapped or read-only address is -EFAULT.
    @Test func noOwnerAndTheErrors() throws {
        let probe = try ShimProbe()
        try probe.space.write(probe.address(0), payload(0, 1))
        #expect(try probe.run(.exclusive, [Op.make.rawValue, probe.address(0), 0]).result == 0)
        #expect(try probe.run(.exclusive, [Op.owner.rawValue]).result == 0)
        try probe.run(.exclusive, [Op.release.rawValue])
        try probe.space.unmap(start: probe.address(1), length: 4096)
        #expect(try probe.run(.exclusive, [Op.make.rawValue, probe.address(1), 1]).result == ShimProbe.EFAULT)
        try probe.space.write(probe.address(2), payload(2, 1))
        try probe.space.protect(start: probe.address(2), length: 4096, .read)
        #expect(try probe.run(.exclusive, [Op.make.rawValue, probe.address(2), 1]).result == ShimProbe.EFAULT)
        #expect(probe.reports.isEmpty, "\(probe.reports)")
        probe.instance.destroy()
    }

    /// The folio comes back locked: a second call before folio_unlock is a
    /// BUG (Linux would wait for ever), an unlock of an unlocked folio is
    /// one too, and the reference it returned is counted: one folio_put too
    /// many is reported.
    @Test func theLockAndTheReferenceAreTheDriversToDrop() throws {
        let probe = try ShimProbe()
        let address = probe.address(0)
        try probe.space.write(address, payload(0, 1))
        #expect(try probe.run(.exclusive, [Op.make.rawValue, address, 1]).result == 0)
        #expect(try probe.run(.exclusive, [Op.make.rawValue, address, 1]).result == -35, "-EDEADLK")
        #expect(probe.reports.count == 1 && probe.reports[0].contains("whose folio is still locked"), "\(probe.reports)")
        try probe.run(.exclusive, [Op.unlock.rawValue])
        try probe.run(.exclusive, [Op.unlock.rawValue])
        #expect(probe.reports.count == 2 && probe.reports[1].hasPrefix("BUG: folio_unlock of a folio that is not locked"), "\(probe.reports)")
        try probe.run(.page, [5, LinuxShimPageTests.PageOp.put.rawValue])
        #expect(probe.reports.count == 2, "the put balances make_device_exclusive's reference: \(probe.reports)")
        try probe.run(.page, [5, LinuxShimPageTests.PageOp.put.rawValue])
        #expect(probe.reports.count == 3 && probe.reports[2].hasPrefix("BUG: put_page of a page without a reference"), "\(probe.reports)")
        probe.instance.destroy()
    }
}
