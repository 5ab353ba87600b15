/// A run in progress, for the live progress line.
public struct RunProgress: Sendable {
    public var elapsedSeconds: Double
    public var operations: Int
    public var freeFrames: Int
    public var findings: Int
    /// Invalidation starts so far, by event reason (`vmscan`, `migrate`, ...).
    public var invalidations: [(event: String, count: Int)]
}

/// One point of a run's timeline, taken about every progress interval.
public struct TimelineSample: Sendable {
    public var seconds: Double
    public var freeFrames: Int
    /// Accesses so far (CPU and device, reads and writes).
    public var operations: Int
    /// Invalidation starts so far, by event reason (cumulative).
    public var invalidations: [String: Int]

    public init(seconds: Double, freeFrames: Int, operations: Int, invalidations: [String: Int]) {
        self.seconds = seconds
        self.freeFrames = freeFrames
        self.operations = operations
        self.invalidations = invalidations
    }
}

/// How long one plugin's callbacks of one kind took (from an HdrHistogram
/// of every call in the run), in nanoseconds.
public struct CallbackLatency: Sendable {
    /// The plugin spec's name and instance, as in `RunResult.pluginStatistics`.
    public var plugin: String
    /// `invalidate_range_start`, `invalidate_range_end`, `clear_young`, ...
    public var callback: String
    public var count: Int
    public var p50: UInt64
    public var p90: UInt64
    public var p99: UInt64
    public var p999: UInt64
    public var max: UInt64

    public init(plugin: String, callback: String, count: Int, p50: UInt64, p90: UInt64, p99: UInt64, p999: UInt64, max: UInt64) {
        self.plugin = plugin
        self.callback = callback
        self.count = count
        self.p50 = p50
        self.p90 = p90
        self.p99 = p99
        self.p999 = p999
        self.max = max
    }
}

/// What one actor of a run got done: a workload thread's accesses that
/// went through, a pressure actor's operations that took effect. An actor
/// with no success at all checked nothing (every attach refused, its
/// space killed before it began, migration to a device with no memory, an
/// OOM kill scheduled after the run's end) and is named in the summary.
public struct ActorActivity: Sendable {
    public enum Role: String, Sendable {
        /// A workload thread: reads and writes, every read checked.
        case workload
        /// A pressure actor: reclaim, migration, churn, attach churn, ...
        case pressure
    }
    public var name: String
    public var role: Role
    /// Steps that did what the actor is there for.
    public var successes: Int
    /// Steps tried.
    public var steps: Int

    public init(name: String, role: Role, successes: Int, steps: Int) {
        self.name = name
        self.role = role
        self.successes = successes
        self.steps = steps
    }

    /// It never once succeeded.
    public var isIdle: Bool { successes == 0 }
}

/// The machine's memory as the run's charts draw it: total frames and the
/// per-node watermarks.
public struct MemorySummary: Sendable {
    public var frames: Int
    public var nodes: Int
    /// Free frames per node below which only reclaim may allocate.
    public var minFree: Int
    /// Free frames per node below which kswapd wakes.
    public var lowFree: Int
    /// Free frames per node kswapd works up to.
    public var highFree: Int

    public init(frames: Int, nodes: Int, minFree: Int, lowFree: Int, highFree: Int) {
        self.frames = frames
        self.nodes = nodes
        self.minFree = minFree
        self.lowFree = lowFree
        self.highFree = highFree
    }
}

/// How a run ended, as kselftest has it: a finding fails it; a run that
/// checked no read at all is skipped (it proves nothing, so it is never
/// called clean); otherwise it is clean.
public enum Verdict: String, Sendable {
    case clean
    case fail
    case skip
}

/// What a run found.
public struct RunResult: Sendable {
    public var scenario: String
    public var seed: UInt64
    public var elapsedSeconds: Double
    public var cpuReads: Int
    public var cpuWrites: Int
    public var deviceReads: Int
    public var deviceWrites: Int
    public var checkedReads: Int
    public var failedAccesses: Int
    /// The first occurrence of each bug, in the bugs' order (only the
    /// checks the scenario has on).
    public var findings: [Finding]
    /// Every finding of the enabled checks, including those attached to a
    /// bug as symptoms and those whose details were not kept.
    public var findingsTotal: Int
    /// The findings as a bug tracker lists them, in the order first seen.
    public var bugs: [Bug] = []
    /// Findings per enabled invariant (every one of them, zero or not).
    public var findingsByInvariant: [(invariant: Finding.Invariant, count: Int)] = []
    /// What each actor got done.
    public var actors: [ActorActivity] = []
    /// The command that replays the run.
    public var replay: ReplayCommand
    /// The scenario as it ran (with added plugins, the seed and length of
    /// the run), in the YAML a scenario file takes.
    public var scenarioYAML = ""
    /// Frames and watermarks, for the free-frames chart.
    public var memory: MemorySummary? = nil
    public var machineStatistics: [(String, Int)]
    /// By plugin spec name and instance: the plugin's counters.
    public var pluginStatistics: [(String, [(name: String, value: UInt64)])]
    /// Free frames, accesses and invalidations over time.
    public var timeline: [TimelineSample] = []
    /// Callback latency percentiles, per plugin instance and callback.
    public var latencies: [CallbackLatency] = []
    /// Stopped before its length by a request (Ctrl-C): what ran is
    /// reported and checked, but the run is shorter than asked.
    public var interrupted = false
    /// What the run could not do as the scenario asked (an actor left out
    /// because a plugin lacks the operation it drives), and what the report
    /// cannot show in full (findings that came faster than the run loop
    /// could read them: counted, not filed in a bug).
    public var notes: [String] = []
    /// A digest of every entry of the event trail, in order (times
    /// included): two deterministic runs with equal digests saw the same events.
    public var trailDigest: UInt64 = 0
    /// How a deterministic run (`--schedule`) was scheduled; nil when free-running.
    public var schedule: ScheduleSummary? = nil
    /// With `RunOptions.recordsChoices`: the run's scheduling choices.
    public var recordedSchedule: RecordedSchedule? = nil
    /// Plugins' calls into the host from threads the scheduler did not make.
    var scheduleEscapes: [String] = []
    /// With `RunOptions.trace`: the kept steps and the event-trail entries
    /// recorded at them, in order.
    public var trace: [TraceLine] = []

    public init(
        scenario: String, seed: UInt64, elapsedSeconds: Double, cpuReads: Int, cpuWrites: Int, deviceReads: Int, deviceWrites: Int,
        checkedReads: Int, failedAccesses: Int, findings: [Finding], findingsTotal: Int, machineStatistics: [(String, Int)],
        pluginStatistics: [(String, [(name: String, value: UInt64)])]
    ) {
        self.scenario = scenario
        self.seed = seed
        self.elapsedSeconds = elapsedSeconds
        self.cpuReads = cpuReads
        self.cpuWrites = cpuWrites
        self.deviceReads = deviceReads
        self.deviceWrites = deviceWrites
        self.checkedReads = checkedReads
        self.failedAccesses = failedAccesses
        self.findings = findings
        self.findingsTotal = findingsTotal
        self.machineStatistics = machineStatistics
        self.pluginStatistics = pluginStatistics
        replay = ReplayCommand(scenario: scenario, seed: seed)
    }

    public var operations: Int { cpuReads + cpuWrites + deviceReads + deviceWrites }
    /// A finding of an enabled check, kept or not.
    public var hasFindings: Bool { !findings.isEmpty || findingsTotal > 0 || !bugs.isEmpty }
    /// Fail with a finding, skip when no read was checked, else clean.
    public var verdict: Verdict { hasFindings ? .fail : checkedReads == 0 ? .skip : .clean }
    /// No finding, and something was checked.
    public var isClean: Bool { verdict == .clean }
    /// The actors that never succeeded.
    public var idleActors: [ActorActivity] { actors.filter(\.isIdle) }

    /// What a person should know besides the findings: every actor that
    /// never succeeded, and a run that checked no read at all.
    public var warnings: [String] {
        var warnings = idleActors.map { actor in
            "\(actor.role == .workload ? "workload thread" : "actor") '\(actor.name)' never succeeded "
                + (actor.steps == 0 ? "(it never ran a step)" : "in \(actor.steps) step\(actor.steps == 1 ? "" : "s")")
                + (actor.role == .workload ? ": none of its accesses went through, so it checked nothing" : ": it put no pressure on the run")
        }
        if checkedReads == 0 { warnings.append("no read was checked: the run proves nothing (SKIP)") }
        return warnings
    }
}

/// One line of a replayed run's trace: at a scheduling step, a thread did
/// an operation of the synchronisation layer, or the event trail recorded
/// what the primary did to the devices.
public struct TraceLine: Sendable, Hashable {
    public var step: UInt64
    /// The thread running at that step.
    public var thread: String
    /// "lock 'gpu vm 1'", "invalidate start vmscan [0x..., 0x...) on mm#2".
    public var text: String

    public init(step: UInt64, thread: String, text: String) {
        self.step = step
        self.thread = thread
        self.text = text
    }
}
