import LabSync
import PluginHost
import Synchronization
import Testing
import TestSupport
import VirtualMemory

/// The Linux shim's synchronisation, context rules, reports and library,
/// through its probe: locks and waits on the host's primitives (so the
/// host's context checks apply), WARN_ON and friends as findings with the
/// file and line, and the pure functions (xarray, jiffies, kmalloc, list,
/// kref, atomics) checked inside the plugin.
@Suite("Linux shim: locks, waits, contexts, reports")
struct LinuxShimSyncTests {
    @Test func thePureFunctionsPassTheirChecksInsideThePlugin() throws {
        let probe = try ShimProbe()
        let reply = try probe.run(.selftest)
        #expect(reply.result >= 60 && reply.message.isEmpty, "\(reply.result) checks; first failure: \(reply.message)")
        // The one report is the selftest's own: storing an internal entry
        // into an xarray is refused with a WARN_ON_ONCE (once per process).
        #expect(probe.reports.count <= 1 && probe.reports.allSatisfy { $0.hasPrefix("WARN_ON_ONCE: xa_is_internal(entry) at xarray.c:") },
                "\(probe.reports)")
        #expect(probe.machine.sync.contextViolations.count == 0)
        probe.instance.destroy()
    }

    /// probe.h's `enum probe_context`: each is done with a spin lock held.
    enum Context: UInt64, CaseIterable {
        case mutex = 1, gfpKernel, gfpAtomic, mightSleep, mutexTrylock, downRead, downReadTrylock, msleep, kmap, kmapLocal
        case xaStoreKernel, xaStoreAtomic, condResched
        case setPageDirty, setPageDirtyLock, markAccessed, memcpyFromPage, pinFast, checkRetry, ktimeGetNs
        case ndelay, mdelay, fsleepShort, fsleepLong, msleepInterruptible, printk

        /// Whether Linux would say "sleeping function called from invalid context".
        /// (set_page_dirty_lock takes the page lock; fsleep of 10 us or less
        /// is udelay, of more a sleep; pin_user_pages_fast may fall back to
        /// faulting under mmap_lock.)
        var sleeps: Bool {
            [.mutex, .gfpKernel, .mightSleep, .downRead, .msleep, .kmap, .xaStoreKernel, .condResched, .setPageDirtyLock, .pinFast,
             .fsleepLong, .msleepInterruptible].contains(self)
        }
    }

    @Test(arguments: Context.allCases)
    func whatMaySleepIsAContextViolationUnderASpinLock(_ context: Context) throws {
        let probe = try ShimProbe()
        try probe.space.populate(start: probe.address(0), length: 4096, write: true)
        #expect(try probe.run(.hmmFault, [probe.address(0), 0, UInt64(try probe.run(.readBegin).result), 0]).result == 0)
        let before = probe.machine.sync.contextViolations.count
        try probe.run(.context, [context.rawValue])
        let made = probe.machine.sync.contextViolations.snapshot.dropFirst(before)
        if context.sleeps {
            #expect(!made.isEmpty, "\(context) under a spin lock must be reported")
            #expect(made.allSatisfy { $0.context.reason == "spin lock" }, "\(made)")
        } else {
            #expect(made.isEmpty, "\(context) never sleeps: \(made)")
        }
        if context == .mutex { #expect(made.contains { $0.object == "&probe->mutex" }, "the mutex is named: \(made)") }
        if context == .downRead { #expect(made.contains { $0.object == "&probe->sem" }, "the semaphore is named: \(made)") }
        probe.instance.destroy()
    }

    /// probe.h's `enum probe_warning`.
    enum Warning: UInt64 {
        case warnOn = 1, lockdep, mutexUnlock, bugOn, warnOnOnceTwice, doubleKfree, kunmapOrder, leak, format, printk, heldLockFreed
        case uninitialised, lockdepWrite, lockdepRead, spinNotLocked
    }

    @Test func warningsAndBugsAreReportedWithTheirFileAndLine() throws {
        let probe = try ShimProbe()
        func reported(_ warning: Warning) throws -> [String] {
            let before = probe.reports.count
            try probe.run(.warn, [warning.rawValue])
            return Array(probe.reports.dropFirst(before))
        }
        let warnOn = try reported(.warnOn)
        #expect(warnOn.count == 1 && warnOn[0].hasPrefix("WARN_ON: probe != NULL at probe.c:"), "\(warnOn)")
        #expect(warnOn.first?.hasSuffix("in probe_warning()") == true, "\(warnOn)")
        let lockdep = try reported(.lockdep)
        #expect(lockdep.count == 1 && lockdep[0].hasPrefix("WARN: lockdep_assert_held(&probe->mutex) at probe.c:"), "\(lockdep)")
        let unlock = try reported(.mutexUnlock)
        #expect(unlock.count == 1 && unlock[0].contains("mutex_unlock of a mutex the thread does not hold at probe.c:"), "\(unlock)")
        let bug = try reported(.bugOn)
        #expect(bug.count == 1 && bug[0].hasPrefix("BUG_ON: probe->flag == probe->flag at probe.c:"), "\(bug)")
        #expect(try reported(.warnOnOnceTwice).count == 1, "WARN_ON_ONCE: once")
        let kfree = try reported(.doubleKfree)
        #expect(kfree.count == 1 && kfree[0].contains("kfree of memory kmalloc did not return, or already freed at probe.c:"), "\(kfree)")

        try probe.space.populate(start: probe.address(0), length: 2 * 4096, write: true)
        for slot in 0..<2 {
            #expect(try probe.run(.hmmFault, [probe.address(slot), 0, UInt64(try probe.run(.readBegin).result), UInt64(slot)]).result == 0)
        }
        let order = try reported(.kunmapOrder)
        #expect(order.count == 1 && order[0].contains("kunmap_local out of order"), "\(order)")

        let format = try reported(.format)
        #expect(format.count == 1 && format[0].hasPrefix("WARN: bad value 7 at probe.c:"), "\(format)")
        #expect(try reported(.printk).isEmpty, "printk is not a report")
        let printed = probe.instance.log.snapshot.suffix(2).map { "\($0.level) \($0.message)" }
        #expect(printed == ["error probe error 42", "info probe info"], "\(printed)")
        let freed = try reported(.heldLockFreed)
        #expect(freed.count == 1 && freed[0].hasPrefix("BUG: held lock freed: 'held' in memory freed at probe.c:"), "\(freed)")
        let uninitialised = try reported(.uninitialised)
        #expect(uninitialised.count == 1 && uninitialised[0].contains("lock used before it was initialised at probe.c:"), "\(uninitialised)")

        let write = try reported(.lockdepWrite)
        #expect(write.count == 1 && write[0].hasPrefix("WARN: lockdep_assert_held_write(&probe->sem) at probe.c:"), "held for reading: \(write)")
        let read = try reported(.lockdepRead)
        #expect(read.count == 1 && read[0].hasPrefix("WARN: lockdep_assert_held_read(&probe->sem) at probe.c:"), "\(read)")
        let spin = try reported(.spinNotLocked)
        #expect(spin.count == 1 && spin[0].hasPrefix("WARN: assert_spin_locked(&probe->lock) at probe.c:"), "\(spin)")

        _ = try reported(.leak)
        probe.instance.destroy()
        #expect(probe.reports.last?.contains("kmemleak: 1 kmalloc allocation(s), 100 bytes, never freed") == true, "\(probe.reports)")
    }

    /// What a background call returned, once it has (Int64.min until then).
    final class Outcome: Sendable {
        private let value = Atomic<Int64>(Int64.min)
        var returned: Int64? {
            let now = value.load(ordering: .acquiring)
            return now == Int64.min ? nil : now
        }
        func set(_ result: Int64) { value.store(result, ordering: .releasing) }
    }

    /// Runs `body` on a thread of the machine's domain.
    static func background(_ probe: ShimProbe, _ body: @escaping @Sendable () throws -> Int64) -> (any ThreadHandle, Outcome) {
        let outcome = Outcome()
        let thread = probe.machine.sync.spawnThread(named: "waiter") { outcome.set((try? body()) ?? -1) }
        return (thread, outcome)
    }

    @Test func waitEventSleepsUntilWakeUpAndTimesOutOtherwise() throws {
        let probe = try ShimProbe()
        #expect(try probe.run(.waitEvent, [5]).result == 0, "wait_event_timeout with the condition false: 0")
        let (thread, outcome) = Self.background(probe) { try probe.run(.waitEvent, [0]).result }
        probe.machine.sync.sleep(for: .milliseconds(20))
        #expect(outcome.returned == nil, "wait_event returned before the wake_up")
        try probe.run(.wake)
        thread.join()
        #expect(outcome.returned == 1)
        #expect(try probe.run(.waitEvent, [5]).result >= 1, "the condition holds: at least 1 jiffy left")
        #expect(probe.machine.sync.contextViolations.count == 0)
        probe.instance.destroy()
    }

    @Test func completionsWaitForCompleteAndCompleteAllOpensThemForGood() throws {
        let probe = try ShimProbe()
        #expect(try probe.run(.waitCompletion, [5]).result == 0, "timed out: 0")
        let (thread, outcome) = Self.background(probe) { try probe.run(.waitCompletion, [0]).result }
        probe.machine.sync.sleep(for: .milliseconds(20))
        #expect(outcome.returned == nil, "wait_for_completion returned before complete")
        try probe.run(.complete, [0])
        thread.join()
        #expect(outcome.returned == 1)
        #expect(try probe.run(.waitCompletion, [5]).result == 0, "complete() lets one waiter through, once")
        try probe.run(.complete, [1])
        #expect(try probe.run(.waitCompletion, [5]).result >= 1 && (try probe.run(.waitCompletion, [5]).result) >= 1, "complete_all: every wait")
        probe.instance.destroy()
    }

    /// probe.h's `enum probe_rwsem`.
    enum Semaphore: UInt64 { case downRead = 1, upRead, downWriteTrylock, downReadTrylock, upWrite, downWrite, downgrade }

    @Test func aRwSemaphoreSharesReadersAndExcludesWriters() throws {
        let probe = try ShimProbe()
        @Sendable @discardableResult func sem(_ step: Semaphore) throws -> Int64 { try probe.run(.rwsem, [step.rawValue]).result }
        try sem(.downRead)
        #expect(try sem(.downReadTrylock) == 1, "readers share")
        #expect(try sem(.downWriteTrylock) == 0, "a writer waits for readers")
        try sem(.upRead)
        #expect(try sem(.downWriteTrylock) == 0, "one reader is still in")

        // A writer blocks until the last reader leaves.
        let (thread, outcome) = Self.background(probe) {
            _ = try sem(.downWrite)
            try sem(.upWrite)
            return 1
        }
        probe.machine.sync.sleep(for: .milliseconds(20))
        #expect(outcome.returned == nil, "down_write returned with a reader inside")
        try sem(.upRead)
        thread.join()
        #expect(outcome.returned == 1)

        // A writer excludes readers, and may become one.
        try sem(.downWrite)
        #expect(try sem(.downReadTrylock) == 0)
        try sem(.downgrade)
        #expect(try sem(.downReadTrylock) == 1, "downgraded: readers come in")
        #expect(try sem(.downWriteTrylock) == 0)
        try sem(.upRead)
        try sem(.upRead)
        #expect(try sem(.downWriteTrylock) == 1)
        try sem(.upWrite)
        #expect(probe.reports.isEmpty && probe.machine.sync.contextViolations.count == 0, "\(probe.reports)")
        probe.instance.destroy()
    }

    @Test func jiffiesFollowTheHostsClock() throws {
        let probe = try ShimProbe()
        let before = try probe.run(.jiffies).result
        let after = try probe.run(.jiffies, [10]).result
        #expect(after - before >= 10, "msleep(10) is at least 10 jiffies at HZ=1000: \(before) -> \(after)")
        probe.instance.destroy()
    }
}
