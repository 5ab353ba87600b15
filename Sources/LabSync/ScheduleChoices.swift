/// One decision of a controlled run, written down: at decision number
/// `decision`, where the running thread is at `site`, thread `thread` runs
/// next.
///
/// The scheduler decides who runs next after every scheduling point and
/// whenever the running thread stops (blocks, sleeps, ends); decisions are
/// numbered from 1 in the order they are made (a step may see two: the
/// point, then the block that follows it).
public struct ScheduleChoice: Sendable, Hashable, CustomStringConvertible {
    /// The decision's number: the choice applies at the first decision from
    /// this one on at `site` (the recorded run's own decision, in a replay).
    public var decision: UInt64
    /// The step the decision came after (what a person and a cut at a
    /// finding's step go by; the decision number and site are what is matched).
    public var step: UInt64
    /// The thread that runs next, by its index (the order threads were made; 0 is the root).
    public var thread: UInt32
    /// Where the running thread was (`ScheduleSite`); nil: anywhere.
    public var site: ScheduleSite?

    public init(decision: UInt64, step: UInt64, thread: UInt32, site: ScheduleSite? = nil) {
        self.decision = decision
        self.step = step
        self.thread = thread
        self.site = site
    }

    public var description: String { "decision \(decision) (step \(step))\(site.map { " at \($0)" } ?? "") -> thread \(thread)" }
}

/// Where a decision is made: the thread that was running, the kind and
/// object of its last scheduling point, and whether it stopped there (or
/// may go on). One 64-bit number: bit 63 stopped, bits 40-62 the thread's
/// index, bits 32-39 the point's kind, bits 0-31 its object (a monitor's
/// serial, a spin lock's name hash, a thread's index).
///
/// A choice anchored at a site keeps its place in a thread's loop when the
/// decisions before it change (a choice dropped or moved earlier): it
/// waits for the same thread at the same point, instead of landing in the
/// middle of something else.
public struct ScheduleSite: Sendable, Hashable, CustomStringConvertible {
    public let rawValue: UInt64

    public init(rawValue: UInt64) { self.rawValue = rawValue }

    public init(thread: Int, kind: SchedulingPointKind, object: UInt32, stopped: Bool) {
        precondition(thread >= 0 && thread < 1 << 23, "thread index \(thread) out of a site's range")
        rawValue = (stopped ? 1 << 63 : 0) | UInt64(thread) << 40 | UInt64(kind.rawValue) << 32 | UInt64(object)
    }

    public var thread: Int { Int((rawValue >> 40) & 0x7F_FFFF) }
    public var kind: SchedulingPointKind? { SchedulingPointKind(rawValue: UInt8((rawValue >> 32) & 0xFF)) }
    public var object: UInt32 { UInt32(truncatingIfNeeded: rawValue) }
    public var stopped: Bool { rawValue >> 63 == 1 }

    /// `0x` and 16 hex digits, as a schedule file has it.
    public var description: String {
        let digits = String(rawValue, radix: 16)
        return "0x" + String(repeating: "0", count: 16 - digits.count) + digits
    }
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
/// that was edited is followed as far as it applies: a choice applies at
/// the first decision from its number on where the running thread is at
/// its site and its thread can run; one still waiting when the next
/// choice's number (or `through`) comes is skipped
/// (`ScheduleStatistics.choicesSkipped`), and the default rule decides.
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
