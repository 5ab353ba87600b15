#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif
import CLabSyncShims

// The scheduling state machine. Every function here runs with `mutex` held,
// on the current thread (or on a foreign thread that only enables others).
//
// Invariants (checked by `assertConsistent` in debug builds):
// - `current`, when set, is a thread that is running or about to (its gate
//   is open, or opens once the thread that chose it lets go of the mutex);
//   every other live thread waits on its gate;
// - `enabledCount` is the number of threads whose status is `.enabled`;
// - a blocked thread with a deadline before `UInt64.max` is counted in
//   `nextDeadline` (which may be earlier than every live deadline, never later).
extension ControlledScheduler {
    /// Counts one step of `me` (the current thread): the clock advances, the
    /// step joins the digest and the trace, due timers fire.
    func tick(_ me: ScheduledThread, _ kind: SchedulingPointKind, object: UInt32) {
        let step = stepCount.load(ordering: .relaxed) &+ 1
        stepCount.store(step, ordering: .relaxed)
        me.stepsSinceDrop &+= 1
        me.lastKind = kind
        me.lastObject = object
        let now = clock.load(ordering: .relaxed) &+ configuration.nanosecondsPerStep
        clock.store(now, ordering: .relaxed)
        // The digest folds (thread, kind, object) of every step in order.
        let word = UInt64(me.index) << 40 | UInt64(kind.rawValue) << 32 | UInt64(object)
        digest = (digest ^ word) &* 0x0000_0100_0000_01B3
        digest ^= digest >> 29
        if configuration.keptSteps > 0, step <= configuration.keepStepsUntil ?? .max {
            let entry = ScheduleStep(step: step, thread: UInt32(me.index), kind: kind, object: object)
            if recent.count < configuration.keptSteps {
                recent.append(entry)
            } else {
                recent[recentNext] = entry
                recentNext = (recentNext + 1) % configuration.keptSteps
            }
        }
        if now >= nextDeadline { fireTimers() }
        if let limit = configuration.stepLimit, step >= limit {
            deadlocked(.stepLimit)
            parkForever(me)
        }
    }

    /// A scheduling point of the current thread `me`: one step, then the
    /// strategy decides whether another thread runs first. Returns when `me`
    /// is current again.
    func point(_ me: ScheduledThread, _ kind: SchedulingPointKind, object: UInt32, yielding: Bool = false) {
        assert(current === me && me.status == .enabled, "a scheduling point of '\(me.name)', which is not running")
        tick(me, kind, object: object)
        if yielding {
            me.yielded = true
            if onlySpinnersRunnable() {
                // Spinners wait for someone else: time passes until a sleeper
                // wakes, as it would while a real CPU spins.
                if nextDeadline != .max {
                    jumpClock()
                    spinOnlySteps = 0
                } else {
                    spinOnlySteps += 1
                    if spinOnlySteps >= configuration.livelockSteps { livelocked(me) }
                }
            }
        } else if me.yielded {
            me.yielded = false
            spinOnlySteps = 0
        }
        if let next = chooseAfterPoint(me, yielding: yielding) { handOver(from: me, to: next) }
    }

    /// Marks `me` blocked on `site` (it stops being runnable).
    func block(_ me: ScheduledThread, on site: WaitSite) {
        assert(me.status == .enabled)
        me.status = .blocked
        me.waitingFor = site
        me.timedOut = false
        enabledCount -= 1
    }

    /// Makes a blocked (or new) thread runnable; cancels its deadline.
    func enable(_ thread: ScheduledThread) {
        guard thread.status == .blocked else { return }
        thread.status = .enabled
        thread.waitingFor = nil
        thread.deadline = .max
        thread.conditionOf = nil
        enabledCount += 1
        priorityOrderChanged = true
    }

    /// Gives the blocked thread `me` a wake-up `nanoseconds` from now.
    func setDeadline(_ me: ScheduledThread, after nanoseconds: UInt64) {
        let now = clock.load(ordering: .relaxed)
        let (sum, overflow) = now.addingReportingOverflow(nanoseconds)
        me.deadline = overflow ? .max - 1 : min(sum, .max - 1)
        nextDeadline = min(nextDeadline, me.deadline)
    }

    /// Wakes every blocked thread whose deadline has come, in index order.
    func fireTimers() {
        let now = clock.load(ordering: .relaxed)
        var earliest = UInt64.max
        for thread in threads where thread.status == .blocked && thread.deadline != .max {
            if thread.deadline <= now {
                if let monitor = thread.conditionOf { monitor.removeConditionWaiter(thread) }
                enable(thread)
                thread.timedOut = true
            } else {
                earliest = min(earliest, thread.deadline)
            }
        }
        nextDeadline = earliest
    }

    /// Moves the clock to the next deadline and fires it.
    func jumpClock() {
        guard nextDeadline != .max else { return }
        if nextDeadline > clock.load(ordering: .relaxed) { clock.store(nextDeadline, ordering: .relaxed) }
        fireTimers()
    }

    /// Whether every runnable thread's last point was a spin.
    func onlySpinnersRunnable() -> Bool {
        for thread in threads where thread.status == .enabled && !thread.yielded { return false }
        return true
    }

    /// `me` stopped (blocked, or finishing): picks the next thread, jumping the
    /// clock or waiting for foreign threads if none can run, and waits until
    /// `me` is current again (never, for a finished thread or a dead run).
    func switchAway(_ me: ScheduledThread) {
        let next = chooseWhenStopped(me)
        if next !== me { handOver(from: me, to: next) }
    }

    /// Makes `next` current and waits (on `me`'s gate) until `me` is again;
    /// returns with the mutex held, as it was called.
    /// `next == nil`: the run is over; `me` stays parked.
    ///
    /// Ordering: the mutex is let go before `next`'s gate opens, so `next`
    /// does not wake into a held mutex (and sleep on it again); between the
    /// two only a foreign thread can take the mutex, and it finds `current`
    /// already `next`. `me`'s gate opens only when a later current thread
    /// makes `me` current, which may happen before `me` reaches its gate (the
    /// gate stays open until passed).
    ///
    /// In user space (`borrowsThreads`) the carrier keeps the mutex across
    /// the switch: it is held for whichever thread runs next, which goes on
    /// from its own switch (or its start) with it held, as here.
    func handOver(from me: ScheduledThread, to next: ScheduledThread?) {
        assert(!me.isFinished, "a finished thread hands over in `finish`")
        makeCurrent(next)
        if borrowsThreads, let next {
            mmulab_fiber_switch(me.fiber, next.fiber, writesThreadPointerDirectly)
            releaseExiting()
            assert(current === me, "'\(me.name)' was switched to but is not current")
            return
        }
        mutex.unlock()
        guard let next else { parkedForever(me) }
        mmulab_gate_open(next.gate)
        mmulab_gate_pass(me.gate)
        mutex.lock()
        assert(current === me, "'\(me.name)' passed its gate but is not current")
    }

    /// After a switch in user space: a thread that finished before it is
    /// left for good, so its kernel thread may now exit (from its own stack).
    @inline(__always)
    func releaseExiting() {
        guard let finished = exiting else { return }
        exiting = nil
        mmulab_fiber_release(finished.fiber)
    }

    /// Sets `current` (the caller opens its gate once it let go of the mutex).
    func makeCurrent(_ next: ScheduledThread?) {
        current = next
        guard let next else { return }
        switches += 1
        next.runSince = stepCount.load(ordering: .relaxed)
    }

    /// The run is over for `me` (mutex held): it lets go of the mutex and
    /// waits for ever, like every other thread of the run.
    func parkForever(_ me: ScheduledThread) -> Never {
        mutex.unlock()
        parkedForever(me)
    }

    /// Waits for ever (mutex not held): nothing opens `me`'s gate once the run stopped.
    func parkedForever(_ me: ScheduledThread) -> Never {
        while true { mmulab_gate_pass(me.gate) }
    }

    /// The thread `me` finished: its joiners wake, and the next thread is
    /// made current; the caller opens its gate once it let go of the mutex
    /// (nil: the root's end ended the run, or nothing can run again).
    func finish(_ me: ScheduledThread) -> ScheduledThread? {
        tick(me, .exit, object: UInt32(me.index))
        me.status = .finished
        enabledCount -= 1
        for joiner in me.joiners { enable(joiner) }
        me.joiners.removeAll()
        if me.foreignJoiners > 0 { foreignChanged.broadcast() }
        if me.index == 0 {
            // The root returned: nothing else runs again.
            rootFinished = true
            stopped = true
            current = nil
            runEnded.broadcast()
            return nil
        }
        let next = chooseWhenStopped(me)
        makeCurrent(next)
        return next
    }

    // MARK: Choosing

    /// After a point of the running, runnable `me`: the listed choice, or
    /// the default rule, while choices are followed; else the strategy's.
    /// nil: `me` goes on (no reference to return on the common path).
    func chooseAfterPoint(_ me: ScheduledThread, yielding: Bool) -> ScheduledThread? {
        decisions += 1
        let following = followsChoices
        guard following || configuration.recordsChoices else { return strategyAfterPoint(me, yielding: yielding) }
        let fallback = defaultAfterPoint(me, yielding: yielding)
        let next: ScheduledThread
        let site = ScheduleSite(thread: me.index, kind: me.lastKind, object: me.lastObject, stopped: false)
        if following {
            next = listedChoice(at: site, or: fallback)
            passOverChangePoints()
        } else {
            next = strategyAfterPoint(me, yielding: yielding) ?? me
        }
        record(next, default: fallback, at: site)
        return next === me ? nil : next
    }

    /// The strategy's choice after a point of the running, runnable `me`
    /// (nil: `me` goes on).
    func strategyAfterPoint(_ me: ScheduledThread, yielding: Bool) -> ScheduledThread? {
        switch configuration.strategy {
        case .random(let p):
            guard enabledCount > 1 else { return nil }
            if yielding || unitRandom() < p { return randomEnabled(excluding: me) }
            return nil
        case .pct:
            let step = stepCount.load(ordering: .relaxed)
            if step >= nextChangeStep {
                while nextChange < priorityChanges.count, priorityChanges[nextChange].step <= step {
                    me.priority = priorityChanges[nextChange].priority
                    nextChange += 1
                    priorityOrderChanged = true
                }
                noteNextChange()
            }
            let slice = configuration.timeSlice
            if yielding || (slice > 0 && enabledCount > 1 && me.stepsSinceDrop >= slice) {
                // Below everything: a spinner waits for others, and a thread
                // that used its time slice lets the others have theirs (every
                // thread that runs drops in turn, so none starves for more
                // than about one slice per thread).
                lowestPriority -= 1
                me.priority = lowestPriority
                me.stepsSinceDrop = 0
                priorityOrderChanged = true
            }
            guard priorityOrderChanged else { return nil }
            priorityOrderChanged = false
            let best = highestEnabled()
            return best === me ? nil : best
        }
    }

    /// Sets `nextChangeStep` to the step of the next change point not yet passed.
    func noteNextChange() {
        nextChangeStep = nextChange < priorityChanges.count ? priorityChanges[nextChange].step : .max
    }

    /// When `me` cannot go on: the next runnable thread; if none, the clock
    /// jumps to the next wake-up; if there is none either, a deadlock (nil).
    func chooseWhenStopped(_ me: ScheduledThread) -> ScheduledThread? {
        decisions += 1
        var waitedForForeign = 0
        while true {
            if enabledCount > 0 {
                let following = followsChoices
                guard following || configuration.recordsChoices else { return strategyWhenStopped() }
                let fallback = defaultWhenStopped(me)
                let next: ScheduledThread?
                let site = ScheduleSite(thread: me.index, kind: me.lastKind, object: me.lastObject, stopped: true)
                if following, let fallback {
                    next = listedChoice(at: site, or: fallback)
                    passOverChangePoints()
                } else {
                    next = strategyWhenStopped()
                }
                if let next { record(next, default: fallback, at: site) }
                return next
            }
            if nextDeadline != .max {
                jumpClock()
                continue
            }
            if foreignSeen && waitedForForeign < 200 && !stopped {
                // A thread the scheduler did not make may still wake one of
                // ours (the run is already irreproducible): give it time.
                waitedForForeign += 1
                foreignChanged.wait(mutex, nanoseconds: 5_000_000)
                continue
            }
            deadlocked(.deadlock)
            return nil
        }
    }

    /// The strategy's choice among the runnable threads (some are).
    func strategyWhenStopped() -> ScheduledThread? {
        switch configuration.strategy {
        case .random: return randomEnabled(excluding: nil)
        case .pct:
            priorityOrderChanged = false
            return highestEnabled()
        }
    }

    func unitRandom() -> Double { Double(rng.next() >> 11) / Double(1 << 53) }

    /// A uniformly chosen enabled thread other than `excluded`.
    func randomEnabled(excluding excluded: ScheduledThread?) -> ScheduledThread? {
        let count = enabledCount - (excluded?.status == .enabled ? 1 : 0)
        guard count > 0 else { return nil }
        var pick = Int(rng.next() % UInt64(count))
        for thread in threads where thread.status == .enabled && thread !== excluded {
            if pick == 0 { return thread }
            pick -= 1
        }
        preconditionFailure("enabledCount (\(enabledCount)) disagrees with the threads' states")
    }

    /// The enabled thread of highest priority (ties: the lower index).
    func highestEnabled() -> ScheduledThread? {
        var best: ScheduledThread? = nil
        for thread in threads where thread.status == .enabled {
            if best == nil || thread.priority > best!.priority { best = thread }
        }
        return best
    }

    // MARK: Ends

    /// Only spinners have run for `livelockSteps` steps.
    func livelocked(_ me: ScheduledThread) {
        if foreignSeen {
            // Perhaps a thread we did not make holds what they spin on.
            mutex.unlock()
            var pause = timespec(tv_sec: 0, tv_nsec: 100_000)
            nanosleep(&pause, nil)
            mutex.lock()
            spinOnlySteps = 0
            return
        }
        deadlocked(.livelock)
        parkForever(me)
    }

    /// Ends the run with a report of every live thread.
    func deadlocked(_ kind: DeadlockReport.Kind) {
        let live = threads.filter { !$0.isFinished }.map { thread in
            DeadlockReport.Thread(
                name: thread.name,
                state: thread.status == .blocked ? "blocked" : (thread.yielded ? "spinning" : "runnable"),
                waitingFor: thread.waitingFor)
        }
        deadlock = DeadlockReport(
            kind: kind, step: stepCount.load(ordering: .relaxed), virtualNanoseconds: clock.load(ordering: .relaxed), threads: live)
        stopped = true
        current = nil
        runEnded.broadcast()
    }
}
