import LabSync
import PluginHost
import Testing
import TestSupport
import VirtualMemory

/// The Linux shim's delays, clock, printk and mm reference counts, through
/// the probe: each delay takes at least its time on the host's clock (and
/// whether it sleeps is LinuxShimSyncTests' context test), ktime_get_ns is
/// the host's clock in nanoseconds, printk logs at the level its prefix
/// names, and mmget/mmgrab count what they say.
@Suite("Linux shim: delays, ktime, printk, mm references")
struct LinuxShimRuntimeTests {
    /// probe.h's `enum probe_delay_op`.
    enum DelayOp: UInt64 { case ndelay = 1, udelay, mdelay, fsleep, msleepInterruptible, ktimeGetNs }

    /// probe.h's `enum probe_mm_op`.
    enum MmOp: UInt64 { case read = 1, get, put, grab, drop }

    @Test(arguments: [
        (DelayOp.ndelay, UInt64(200_000), UInt64(200_000)), (.udelay, 300, 300_000), (.mdelay, 2, 2_000_000),
        (.fsleep, 5, 5_000), (.fsleep, 150, 150_000), (.fsleep, 21_000, 21_000_000), (.msleepInterruptible, 3, 3_000_000),
    ])
    func aDelayTakesAtLeastItsTime(op: DelayOp, amount: UInt64, nanoseconds: UInt64) throws {
        let probe = try ShimProbe()
        let reply = try probe.run(.delay, [op.rawValue, amount])
        #expect(reply.result >= Int64(nanoseconds), "\(op)(\(amount)) took \(reply.result) ns")
        if op == .msleepInterruptible { #expect(reply.arguments[1] == 0, "no signal cut it short: 0 ms left") }
        #expect(probe.machine.sync.contextViolations.count == 0 && probe.reports.isEmpty, "\(probe.reports)")
        probe.instance.destroy()
    }

    @Test func ktimeGetNsIsTheHostsClockInNanoseconds() throws {
        let probe = try ShimProbe()
        let before = probe.machine.sync.nowNanoseconds()
        let reply = try probe.run(.delay, [DelayOp.ktimeGetNs.rawValue])
        let after = probe.machine.sync.nowNanoseconds()
        let now = UInt64(reply.result)
        #expect(before <= now && now <= after, "ktime_get_ns \(now) outside the host's [\(before), \(after)]")
        #expect(reply.arguments[1] >= now && reply.arguments[1] <= after, "ktime_get() right after: \(reply.arguments[1])")
        probe.instance.destroy()
    }

    /// Every KERN_ level, passed as printk("%s...", level) as print_hex_dump
    /// does (Linux reads the level from the formatted text), and none (8:
    /// Linux's default message level, KERN_WARNING). printk answers the
    /// length it logged: no prefix, no trailing newline.
    @Test func printkLogsAtTheLevelItsPrefixNames() throws {
        let probe = try ShimProbe()
        let levels: [PluginLogEntry.Level] = [.error, .error, .error, .error, .warning, .info, .info, .debug, .warning]
        for (level, expected) in levels.enumerated() {
            let reply = try probe.run(.printk, [UInt64(level)])
            let text = "probe printk \(level)"
            #expect(reply.result == Int64(text.utf8.count), "level \(level): printk answered \(reply.result)")
            let last = try #require(probe.instance.log.snapshot.last)
            #expect(last.level == expected && last.message == text, "level \(level): \(last.level) \(last.message)")
        }
        #expect(probe.reports.isEmpty, "printk is never a finding: \(probe.reports)")
        probe.instance.destroy()
    }

    @Test func mmgetAndMmgrabCountUsersAndReferences() throws {
        let probe = try ShimProbe()
        func refs(_ op: MmOp) throws -> (users: Int64, count: UInt64) {
            let reply = try probe.run(.mmRefs, [op.rawValue])
            return (reply.result, reply.arguments[0])
        }
        let start = try refs(.read)
        #expect(start.users == 1, "the address space's own user")
        #expect(try refs(.get) == (start.users + 1, start.count))
        #expect(try refs(.put) == start)
        #expect(try refs(.grab) == (start.users, start.count + 1))
        #expect(try refs(.drop) == start)
        #expect(probe.reports.isEmpty, "\(probe.reports)")

        // After the exit: mm_users is 0, so mmget is a use of a dead mm
        // (mmget_not_zero is the call for that); mm_count still holds the
        // structure, so mmgrab is fine.
        probe.space.exit()
        #expect(try refs(.read).users == 0)
        #expect(try refs(.grab).count == start.count + 1)
        #expect(probe.reports.isEmpty, "\(probe.reports)")
        _ = try refs(.get)
        #expect(probe.reports.count == 1 && probe.reports[0].hasPrefix("WARN_ON: atomic_inc_return(&mm->mm_users) <= 1 at mm.c:"),
                "\(probe.reports)")
        _ = try refs(.put)
        // The grab is never dropped: reported when the instance goes.
        probe.instance.destroy()
        let warnings = probe.instance.log.snapshot.filter { $0.level == .warning }.map(\.message)
        #expect(warnings.contains { $0.contains("1 mm_struct(s) still referenced (mmgrab without mmdrop) at destroy") }, "\(warnings)")
    }
}
