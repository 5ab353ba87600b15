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
    /// What broke an invariant (only the checks the scenario has on).
    public var findings: [Finding]
    /// Findings beyond those kept.
    public var findingsTotal: Int
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
    /// A digest of every entry of the event trail, in order (times
    /// included): two deterministic runs with equal digests saw the same events.
    public var trailDigest: UInt64 = 0
    /// How a deterministic run (`--schedule`) was scheduled; nil when free-running.
    public var schedule: ScheduleSummary? = nil
    /// Plugins' calls into the host from threads the scheduler did not make.
    var scheduleEscapes: [String] = []
    /// With `RunOptions.trace`: the kept steps and the event-trail entries
    /// recorded at them, in order.
    public var trace: [TraceLine] = []
    /// The arguments of `mmulab run` that replay this run (set by the CLI;
    /// the JSON report carries them, and `mmulab replay` reads them).
    public var replayArguments: [String] = []

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
    }

    public var operations: Int { cpuReads + cpuWrites + deviceReads + deviceWrites }
    /// No finding of an enabled check, kept or not.
    public var isClean: Bool { findings.isEmpty && findingsTotal == 0 }
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
