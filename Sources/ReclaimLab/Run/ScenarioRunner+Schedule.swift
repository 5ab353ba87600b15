public import LabSync

/// A deterministic run's scheduling choices, written down
/// (`RunOptions.recordsChoices`), and its threads' names by index.
public struct RecordedSchedule: Sendable {
    public var choices: ScheduleChoices
    public var threadNames: [String]
}

/// How a deterministic run was scheduled, for the summary, the JSON report
/// and the replay command.
public struct ScheduleSummary: Sendable {
    /// The strategy, as `--schedule` takes it (`pct:3`, `random:0.1`).
    public var strategy: String
    /// Scheduling points passed, times the running thread changed, threads made.
    public var steps: UInt64
    public var switches: UInt64
    public var threads: Int
    /// A digest of every step (thread, operation, object): equal digests, equal interleavings.
    public var scheduleDigest: UInt64
    /// The virtual time the run took, in seconds.
    public var virtualSeconds: Double
    /// Real time from the start of the controlled run to its end, in seconds
    /// (setup and teardown included): what a deterministic run costs.
    public var wallSeconds: Double
    /// What escaped the schedule (threads the scheduler did not make, and
    /// plugins that called the host from them): each makes the run irreproducible.
    public var escapes: [String]
    /// Set when the run could not go on: every thread blocked with nothing to wake it.
    public var deadlock: String?
    /// Decisions made (who runs next), and, when the run followed a list of
    /// choices (`--schedule-file`), how many it listed, followed and skipped
    /// (their thread could not run then), and the step up to which they governed.
    public var decisions: UInt64 = 0
    public var choicesListed: Int? = nil
    public var choicesFollowed = 0
    public var choicesSkipped = 0
    public var choicesThrough: UInt64? = nil
    /// The threads' names, by index (what a schedule file's thread numbers name).
    public var threadNames: [String] = []
}

extension ScenarioRunner {
    /// Virtual time each scheduling point costs in the lab (about what a
    /// lock round trip costs a real thread, so rates keep their proportions).
    public static let nanosecondsPerStep: UInt64 = 100

    /// A run cut at a step (`RunOptions.stopAtStep`) that has not ended this
    /// many steps later (its teardown hangs, or an actor never finishes its
    /// round) is ended there: `mmulab run --stop-at-step N` sets
    /// `RunOptions.stepLimit` to N plus this.
    public static let stepsAfterStop: UInt64 = 2_000_000

    /// The run under a controlled scheduler seeded with the run's seed: its
    /// every thread (the main one, the actors, kswapd, the plugins' own
    /// threads made through the host) runs one at a time, in the order the
    /// strategy picks, on a virtual clock. The same scenario, seed and
    /// strategy give the same run: the same event trail, counters and
    /// findings, at the same steps.
    static func runScheduled(_ scenario: Scenario, options: RunOptions, strategy: ScheduleStrategy) throws(SetupFailure) -> RunResult {
        let seed = options.seed ?? scenario.seed
        var configuration = ControlledScheduler.Configuration(strategy: strategy, seed: seed)
        configuration.nanosecondsPerStep = nanosecondsPerStep
        configuration.horizon = expectedSteps(scenario, options: options)
        if let trace = options.trace {
            configuration.keptSteps = max(trace.steps, 1)
            configuration.keepStepsUntil = trace.lastStep
        }
        configuration.choices = options.scheduleChoices
        configuration.recordsChoices = options.recordsChoices
        configuration.stepLimit = options.stepLimit
        configuration.handsOverInUserSpace = options.handsOverInUserSpace
        let scheduler = ControlledScheduler(configuration)
        let sync = SyncDomain(scheduler: scheduler, lockOrder: scenario.validatesLockOrder)
        let started = FreeRunningScheduler().now()
        let outcome = scheduler.run(named: "main") { () -> Result<RunResult, SetupFailure> in
            do throws(SetupFailure) {
                return .success(try run(scenario, options: options, sync: sync))
            } catch {
                return .failure(error)
            }
        }
        let wall = FreeRunningScheduler().now() - started
        let statistics = scheduler.statistics
        var summary = ScheduleSummary(
            strategy: strategy.description, steps: statistics.steps, switches: statistics.switches, threads: statistics.threads,
            scheduleDigest: statistics.digest, virtualSeconds: Double(statistics.virtualNanoseconds) / 1e9,
            wallSeconds: Double(wall.components.seconds) + Double(wall.components.attoseconds) / 1e18,
            escapes: statistics.foreignThreads.map { "thread \($0) used the lab's primitives without being scheduled" }, deadlock: nil)
        summary.decisions = statistics.decisions
        summary.threadNames = scheduler.threadNames
        if let listed = options.scheduleChoices {
            summary.choicesListed = listed.choices.count
            summary.choicesFollowed = statistics.choicesFollowed
            summary.choicesSkipped = statistics.choicesSkipped
            summary.choicesThrough = listed.through
        }
        let recorded = options.recordsChoices ? RecordedSchedule(choices: scheduler.recordedChoices, threadNames: scheduler.threadNames) : nil
        switch outcome {
        case .finished(.failure(let failure), _):
            throw failure
        case .finished(.success(var result), let leftBehind):
            summary.escapes = result.scheduleEscapes + summary.escapes
            if !leftBehind.isEmpty { summary.escapes.append("left parked at the end (stuck): \(leftBehind.joined(separator: ", "))") }
            result.schedule = summary
            result.recordedSchedule = recorded
            if options.trace != nil { result.trace = Self.trace(scheduler, trailLines: result.trace) }
            return result
        case .deadlocked(let report):
            // Nothing can run again; what the run had gathered is out of
            // reach: the result is the deadlock, filed as a bug of its own.
            summary.deadlock = report.description
            var finding = Finding(
                invariant: .stuck, detail: report.description, seconds: Double(report.virtualNanoseconds) / 1e9, actor: report.threads.first?.name)
            finding.step = report.step
            var result = RunResult(
                scenario: scenario.name, seed: seed, elapsedSeconds: summary.virtualSeconds, cpuReads: 0, cpuWrites: 0, deviceReads: 0,
                deviceWrites: 0, checkedReads: 0, failedAccesses: 0, findings: [finding], findingsTotal: 1, machineStatistics: [],
                pluginStatistics: [])
            let path = report.kind == .stepLimit ? "step limit \(report.step) reached" : "\(report.kind.rawValue) of every thread"
            result.bugs = [Bug(key: BugKey(invariant: .stuck, path: path), count: 1, firstSeenSeconds: finding.seconds ?? 0, first: finding)]
            result.findingsByInvariant = [(.stuck, 1)]
            result.schedule = summary
            result.recordedSchedule = recorded
            var replay = options.replay ?? ReplayCommand(
                scenario: scenario.name, seed: seed, seconds: options.seconds, injections: Injection.named(in: options.faults),
                pluginDirectory: options.pluginDirectory)
            replay.seed = seed
            replay.schedule = strategy.description
            replay.stopAtStep = options.stopAtStep
            result.replay = replay
            var configured = scenario
            configured.seed = seed
            result.scenarioYAML = ScenarioWriter.yaml(configured)
            return result
        }
    }

    /// The kept steps with the trail entries recorded at them, each entry
    /// after its step and given that step's thread.
    static func trace(_ scheduler: ControlledScheduler, trailLines: [TraceLine]) -> [TraceLine] {
        let steps = scheduler.recentSteps
        guard let first = steps.first?.step else { return [] }
        var threadAt: [UInt64: String] = [:]
        var lines: [TraceLine] = []
        for step in steps {
            let (thread, operation) = scheduler.describeParts(step)
            threadAt[step.step] = thread
            lines.append(TraceLine(step: step.step, thread: thread, text: operation))
        }
        // A stable merge: an entry follows the step it was recorded at.
        var merged: [TraceLine] = []
        var pending = trailLines.filter { $0.step >= first }[...]
        for line in lines {
            merged.append(line)
            while let next = pending.first, next.step == line.step {
                merged.append(TraceLine(step: next.step, thread: threadAt[next.step] ?? "", text: next.text))
                pending = pending.dropFirst()
            }
            while let next = pending.first, next.step < line.step { pending = pending.dropFirst() }
        }
        return merged
    }

    /// PCT's `k`: the steps the run is expected to take (its length in
    /// virtual time over the cost of a step, or about 20 steps a checked access).
    static func expectedSteps(_ scenario: Scenario, options: RunOptions) -> UInt64 {
        var length = scenario.length
        if let seconds = options.seconds { length = .seconds(seconds) }
        if let operations = options.operations { length = .operations(operations) }
        switch length {
        case .seconds(let seconds): return max(1_000, UInt64(min(seconds, 1e6) * 1e9) / nanosecondsPerStep)
        case .operations(let count): return max(1_000, UInt64(count) * 20)
        }
    }
}
