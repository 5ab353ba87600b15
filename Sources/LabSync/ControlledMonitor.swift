#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// A controlled scheduler's mutex and condition: no real lock at all, only
/// bookkeeping under the scheduler's mutex. A thread that finds it held, or
/// waits on the condition, blocks in the scheduler, which runs another.
///
/// Scheduling points: before `lock` and `tryLock`, after `unlock`, and the
/// blocking in `wait`. `signal` and `broadcast` are no points of their own:
/// the caller holds the monitor and unlocks it next, which is one.
///
/// Threads the scheduler did not make still get mutual exclusion (they wait
/// for the monitor on the scheduler's `foreignChanged` condition), and their
/// waits return spuriously (which the protocol allows), but they break
/// reproducibility, and the scheduler records their names.
final class ControlledMonitor: Monitor, @unchecked Sendable {
    // @unchecked: every mutable field is guarded by the scheduler's mutex.
    let name: String
    let serial: UInt32
    /// Keeps the scheduler alive as long as the monitor.
    let scheduler: ControlledScheduler
    /// `scheduler`, unmanaged: what every operation reads (no reference
    /// counting on each lock and unlock; `scheduler` keeps it alive).
    private let unmanagedScheduler: Unmanaged<ControlledScheduler>
    /// The holder's index, when a scheduled thread holds it (-1: none). An
    /// index, not a reference: taking and letting go costs no reference counting.
    private var ownerIndex = -1
    /// Held by a thread the scheduler did not make.
    private var foreignOwned = false
    /// Scheduled threads blocked in `lock`, in arrival order.
    private var lockWaiters: [ScheduledThread] = []
    /// Scheduled threads blocked in `wait`, in arrival order.
    private var conditionWaiters: [ScheduledThread] = []
    /// Foreign threads blocked in `lock` or `wait`.
    private var foreignWaiters = 0

    init(name: String, serial: UInt32, scheduler: ControlledScheduler) {
        self.name = name
        self.serial = serial
        self.scheduler = scheduler
        unmanagedScheduler = Unmanaged.passUnretained(scheduler)
    }

    private var isHeld: Bool { ownerIndex >= 0 || foreignOwned }

    /// Runs `body` with the scheduler borrowed, not retained (see `unmanagedScheduler`).
    @inline(__always)
    private func withScheduler<R>(_ body: (ControlledScheduler) -> R) -> R {
        unmanagedScheduler._withUnsafeGuaranteedRef(body)
    }

    func lock() { lock(at: nil) }
    func lock(at site: SourceSite) { lock(at: Optional(site)) }

    private func lock(at site: SourceSite?) {
        withScheduler { s in
            s.mutex.lock()
            defer { s.mutex.unlock() }
            s.withScheduledSelf({ me in
                s.point(me, .lock, object: serial)
                acquire(me, site: site)
            }, foreign: foreignLock)
        }
    }

    /// Takes the monitor for the current thread `me`, blocking while it is held.
    private func acquire(_ me: ScheduledThread, site: SourceSite?) {
        precondition(ownerIndex != me.index, "'\(me.name)' locks monitor '\(name)' it already holds")
        while isHeld {
            withScheduler { s in
                s.block(me, on: WaitSite(kind: .lock, object: name, site: site))
                lockWaiters.append(me)
                s.switchAway(me)
            }
        }
        ownerIndex = me.index
    }

    func tryLock() -> Bool {
        withScheduler { s in
            s.mutex.lock()
            defer { s.mutex.unlock() }
            guard let me = s.scheduledSelf() else {
                s.noteForeign()
                guard !isHeld else { return false }
                foreignOwned = true
                return true
            }
            s.point(me, .tryLock, object: serial)
            guard !isHeld else { return false }
            ownerIndex = me.index
            return true
        }
    }

    func unlock() {
        withScheduler { s in
            s.mutex.lock()
            defer { s.mutex.unlock() }
            s.withScheduledSelf({ me in
                precondition(ownerIndex == me.index, "'\(me.name)' unlocks monitor '\(name)', which it does not hold")
                ownerIndex = -1
                release()
                s.point(me, .unlock, object: serial)
            }, foreign: {
                precondition(foreignOwned, "unlock of monitor '\(name)' by a thread that does not hold it")
                foreignOwned = false
                release()
            })
        }
    }

    /// After the monitor was let go: the first scheduled waiter may take it
    /// (one at a time, as a futex wakes one; a waiter that loses the race
    /// queues again, and the winner's unlock wakes the next).
    private func release() {
        if !lockWaiters.isEmpty { scheduler.enable(lockWaiters.removeFirst()) }
        // A foreign thread may wait for this monitor, or (in the scheduler)
        // for any scheduled thread to become runnable.
        if foreignWaiters > 0 || scheduler.foreignSeen { scheduler.foreignChanged.broadcast() }
    }

    func wait() { _ = wait(timeoutNanoseconds: nil, at: nil) }
    func wait(at site: SourceSite) { _ = wait(timeoutNanoseconds: nil, at: site) }
    func wait(timeout: Duration) -> Bool { wait(timeoutNanoseconds: ControlledScheduler.nanoseconds(timeout), at: nil) }
    func wait(timeout: Duration, at site: SourceSite) -> Bool {
        wait(timeoutNanoseconds: ControlledScheduler.nanoseconds(timeout), at: site)
    }

    private func wait(timeoutNanoseconds: UInt64?, at site: SourceSite?) -> Bool {
        let s = scheduler
        s.mutex.lock()
        defer { s.mutex.unlock() }
        guard let me = s.scheduledSelf() else { return foreignWait(timeoutNanoseconds) }
        precondition(ownerIndex == me.index, "'\(me.name)' waits on monitor '\(name)' without holding it")
        ownerIndex = -1
        release()
        let kind: SchedulingPointKind = timeoutNanoseconds == nil ? .wait : .timedWait
        s.block(me, on: WaitSite(kind: kind, object: name, site: site))
        conditionWaiters.append(me)
        me.conditionOf = self
        if let timeoutNanoseconds { s.setDeadline(me, after: timeoutNanoseconds) }
        s.tick(me, kind, object: serial)
        s.switchAway(me)
        let timedOut = me.timedOut
        acquire(me, site: site)
        return !timedOut
    }

    /// Takes `thread` off the condition's list (its wait timed out).
    func removeConditionWaiter(_ thread: ScheduledThread) {
        if let index = conditionWaiters.firstIndex(where: { $0 === thread }) { conditionWaiters.remove(at: index) }
    }

    func signal() {
        let s = scheduler
        s.mutex.lock()
        defer { s.mutex.unlock() }
        if s.scheduledSelf() == nil { s.noteForeign() }
        if !conditionWaiters.isEmpty { s.enable(conditionWaiters.removeFirst()) }
        if foreignWaiters > 0 || s.foreignSeen { s.foreignChanged.broadcast() }
    }

    func broadcast() {
        let s = scheduler
        s.mutex.lock()
        defer { s.mutex.unlock() }
        if s.scheduledSelf() == nil { s.noteForeign() }
        for waiter in conditionWaiters { s.enable(waiter) }
        conditionWaiters.removeAll()
        if foreignWaiters > 0 || s.foreignSeen { s.foreignChanged.broadcast() }
    }

    // MARK: Threads the scheduler did not make (mutex held)

    private func foreignLock() {
        scheduler.noteForeign()
        foreignWaiters += 1
        while isHeld { scheduler.foreignChanged.wait(scheduler.mutex) }
        foreignWaiters -= 1
        foreignOwned = true
    }

    /// Lets go, waits a little for any change (a spurious wake-up is allowed),
    /// and takes the monitor back.
    private func foreignWait(_ timeoutNanoseconds: UInt64?) -> Bool {
        precondition(foreignOwned, "wait on monitor '\(name)' by a thread that does not hold it")
        scheduler.noteForeign()
        foreignOwned = false
        release()
        foreignWaiters += 1
        scheduler.foreignChanged.wait(scheduler.mutex, nanoseconds: Int64(min(timeoutNanoseconds ?? 1_000_000, 1_000_000)))
        foreignWaiters -= 1
        foreignLock()
        return true
    }
}
