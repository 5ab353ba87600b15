/// One decision of a controlled run, written down: after decision number
/// `decision`, thread `thread` runs.
///
/// The scheduler decides who runs next after every scheduling point and
/// whenever the running thread stops (blocks, sleeps, ends); decisions are
/// numbered from 1 in the order they are made (a step may see two: the
/// point, then the block that follows it).
public struct ScheduleChoice: Sendable, Hashable, CustomStringConvertible {
    /// The decision's number.
    public var decision: UInt64
    /// The step the decision came after (what a person and a cut at a
    /// finding's step go by; the decision number is what is matched).
    public var step: UInt64
    /// The thread that runs next, by its index (the order threads were made; 0 is the root).
    public var thread: UInt32

    public init(decision: UInt64, step: UInt64, thread: UInt32) {
        self.decision = decision
        self.step = step
        self.thread = thread
    }

    public var description: String { "decision \(decision) (step \(step)) -> thread \(thread)" }
}

/// The scheduling choices a controlled run follows instead of its
/// strategy's, up to step `through`; past it the seeded strategy decides.
///
/// **What is written down.** Only the decisions that differ from the
/// default rule, which is non-preemptive round robin:
/// - after a scheduling point the running thread goes on, unless it is
///   spinning (a contended spin lock, a yield): then the next runnable
///   thread after it in index order runs (cyclically; itself if none);
/// - when the running thread stops, the next runnable thread after it in
///   index order runs (cyclically; itself last, if its own timer woke it).
///
/// So the empty list is the run without a single preemption, each choice
/// is one deviation from it (a preemption, or a hand-over to another thread
/// than round robin's), and `choices.count` is what a shrinker minimises.
///
/// **Guarantee.** A run's recorded choices (`ControlledScheduler.recordedChoices`),
/// followed by a run of the same program with the same configuration,
/// reproduce it decision for decision (the same schedule digest). A list
/// that was edited is followed as far as it applies: a choice naming a
/// thread that cannot run at its decision (finished, blocked, not made) is
/// skipped and the default rule decides (`ScheduleStatistics.choicesSkipped`).
public struct ScheduleChoices: Sendable, Hashable {
    /// Sorted by `decision`, each decision at most once.
    public private(set) var choices: [ScheduleChoice]
    /// The last step whose decisions the list governs.
    public var through: UInt64

    /// Nil unless `choices` is sorted by decision with no decision twice.
    public init?(_ choices: [ScheduleChoice], through: UInt64) {
        for (earlier, later) in zip(choices, choices.dropFirst()) where earlier.decision >= later.decision { return nil }
        self.choices = choices
        self.through = through
    }

    /// The list with only the choices at steps up to `step`, governing
    /// decisions up to it (a cut at a finding: what comes after it is the
    /// strategy's again).
    public func cut(atStep step: UInt64) -> ScheduleChoices {
        var copy = self
        copy.choices = choices.filter { $0.step <= step }
        copy.through = min(through, step)
        return copy
    }

    /// The list with only the choices at `indices` (into `choices`, any order),
    /// governing the same steps: what delta debugging tries.
    public func keeping(_ indices: some Sequence<Int>) -> ScheduleChoices {
        var copy = self
        copy.choices = Set(indices).sorted().map { choices[$0] }
        return copy
    }
}
