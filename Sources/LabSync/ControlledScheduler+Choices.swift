#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

// Following and recording scheduling choices (`ScheduleChoices`). Every
// function here runs with `mutex` held, on the current thread.
//
// Why the exact replay holds: a decision of the replay sees the same state
// as the same-numbered decision of the recorded run (by induction: every
// decision before it went the same way). Where the recorded run deviated
// from the default rule the list names its thread, which can run (same
// state); everywhere else the default rule gives what the run chose. The
// strategy's generator is not drawn from while the list governs, so only
// decisions past `through` (none, for a whole run's list) differ.
extension ControlledScheduler {
    /// Whether the listed choices govern the decision being made (the
    /// current step is at most their `through`).
    var followsChoices: Bool {
        guard let choicesThrough else { return false }
        return stepCount.load(ordering: .relaxed) <= choicesThrough
    }

    /// The default rule after a point of the running, runnable `me`: `me`
    /// goes on unless it spins, then the next runnable thread after it in
    /// index order.
    func defaultAfterPoint(_ me: ScheduledThread, yielding: Bool) -> ScheduledThread {
        guard yielding, enabledCount > 1 else { return me }
        return nextEnabled(after: me) ?? me
    }

    /// The default rule when `me` stopped: the next runnable thread after it
    /// in index order, `me` itself last (nil: none can run).
    func defaultWhenStopped(_ me: ScheduledThread) -> ScheduledThread? {
        nextEnabled(after: me) ?? (me.status == .enabled ? me : nil)
    }

    /// The first enabled thread after `me` in index order, cyclically, not `me`.
    func nextEnabled(after me: ScheduledThread) -> ScheduledThread? {
        let count = threads.count
        var index = (me.index + 1) % max(count, 1)
        while index != me.index {
            if threads[index].status == .enabled { return threads[index] }
            index = (index + 1) % count
        }
        return nil
    }

    /// The listed choice for the decision being made (`decisions`, at
    /// `site`), if the pending one is due here; else `fallback`.
    ///
    /// The list is consumed in order. The pending choice is due from its
    /// decision number on, at the first decision at its site (any site, if
    /// it names none) where its thread can run; it is skipped once the next
    /// choice's number comes first. So an unedited recording applies each
    /// choice at its own decision, and an edited one keeps each choice at
    /// the same point of the same thread's code.
    func listedChoice(at site: ScheduleSite, or fallback: ScheduledThread) -> ScheduledThread {
        guard let list = configuration.choices?.choices else { return fallback }
        while nextListed + 1 < list.count, list[nextListed + 1].decision <= decisions {
            nextListed += 1  // its window ended before it found its site
        }
        guard nextListed < list.count, list[nextListed].decision <= decisions else { return fallback }
        let choice = list[nextListed]
        if let wanted = choice.site, wanted != site { return fallback }
        let index = Int(choice.thread)
        guard index < threads.count, threads[index].status == .enabled else { return fallback }
        nextListed += 1
        choicesFollowed += 1
        return threads[index]
    }

    /// While choices are followed, PCT's change points that come due are
    /// passed over (the list decides), so the strategy resumes past
    /// `through` with the change points still ahead of it.
    func passOverChangePoints() {
        let step = stepCount.load(ordering: .relaxed)
        while nextChange < priorityChanges.count, priorityChanges[nextChange].step <= step { nextChange += 1 }
        noteNextChange()
        priorityOrderChanged = true
    }

    /// Writes down decision `decisions` (at `site`) if it went to another
    /// thread than the default rule's.
    func record(_ chosen: ScheduledThread, default fallback: ScheduledThread?, at site: ScheduleSite) {
        guard configuration.recordsChoices, chosen !== fallback else { return }
        recorded.append(ScheduleChoice(decision: decisions, step: stepCount.load(ordering: .relaxed), thread: UInt32(chosen.index), site: site))
    }

    /// The decisions of the run so far that differed from the default rule,
    /// governing every step so far (empty unless `Configuration.recordsChoices`).
    /// Followed by a run of the same program and configuration, they give
    /// the same run.
    public var recordedChoices: ScheduleChoices {
        mutex.lock()
        defer { mutex.unlock() }
        // Recorded in decision order, one per decision.
        return ScheduleChoices(recorded, through: stepCount.load(ordering: .relaxed))!
    }
}
