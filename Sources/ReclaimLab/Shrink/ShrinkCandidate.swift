public import LabSync

/// A run a shrinker tries: a scenario, the scheduling choices to follow
/// (nil: the seeded strategy alone), where to cut it, and whether to write
/// its choices down. The seed, strategy, injected faults and plugins'
/// directory are the shrinker's runner's, the same for every candidate.
public struct ShrinkCandidate: Sendable {
    public var scenario: Scenario
    public var choices: ScheduleChoices?
    /// `RunOptions.stopAtStep`: every candidate run is cut (and bounded by
    /// the step limit that comes with the cut).
    public var stopAtStep: UInt64
    public var recordsChoices: Bool

    public init(scenario: Scenario, choices: ScheduleChoices?, stopAtStep: UInt64, recordsChoices: Bool = false) {
        self.scenario = scenario
        self.choices = choices
        self.stopAtStep = stopAtStep
        self.recordsChoices = recordsChoices
    }
}

/// What a candidate run gave: the bugs it found (each by title, with the
/// step and virtual time of its first occurrence), the run's size, and its
/// recorded choices if asked for.
public struct CandidateOutcome: Sendable {
    public struct BugSeen: Sendable, Equatable {
        public var title: String
        public var step: UInt64?
        public var seconds: Double?
        public init(title: String, step: UInt64?, seconds: Double?) {
            self.title = title
            self.step = step
            self.seconds = seconds
        }
    }

    public var bugs: [BugSeen]
    /// Scheduling steps the run took in all, threads made, times the running thread changed.
    public var steps: UInt64
    public var threads: Int
    public var switches: UInt64
    public var recorded: ScheduleChoices?
    /// The run's threads' names, by index.
    public var threadNames: [String] = []

    public init(bugs: [BugSeen], steps: UInt64, threads: Int, switches: UInt64, recorded: ScheduleChoices? = nil) {
        self.bugs = bugs
        self.steps = steps
        self.threads = threads
        self.switches = switches
        self.recorded = recorded
    }
}

/// A candidate that failed with the bug, and how big its run was.
public struct ShrinkState: Sendable {
    public var scenario: Scenario
    public var choices: ScheduleChoices?
    /// The step of the bug's first occurrence.
    public var step: UInt64
    /// The step the run is cut at (`--stop-at-step`) and still fails: the
    /// bug's step, or, for a bug noted only after the cut (the primary's
    /// checks, which the main thread collects when the actors stop), the
    /// cut the run was given. The run up to `step` is the same for every
    /// cut from here on, so it fails again with that cut.
    public var cut: UInt64
    /// Its virtual time, in seconds, if the run said.
    public var seconds: Double?
    /// The run's steps in all (the cut's teardown included), threads and switches.
    public var steps: UInt64
    public var threads: Int
    public var switches: UInt64
}
