public import LabSync
import PluginHost
import Synchronization
public import VirtualMemory

/// How to run a scenario, beyond what the file says.
public struct RunOptions: Sendable {
    /// Replaces the scenario's seed.
    public var seed: UInt64? = nil
    /// Replaces the scenario's length with a number of seconds.
    public var seconds: Double? = nil
    /// Replaces the scenario's length with a number of checked accesses.
    public var operations: Int? = nil
    /// Where the bundled plugins are (default: beside the executable).
    public var pluginDirectory: String? = nil
    /// Break the primary on purpose (the oracle must then find something).
    public var faults: MemoryFaultInjection = []
    /// An actor that shows no progress for this long is reported stuck.
    public var watchdogSeconds = 10.0
    /// Called about every `progressInterval` with the run so far.
    public var progress: (@Sendable (RunProgress) -> Void)? = nil
    public var progressInterval: Duration = .milliseconds(250)
    /// Run deterministically under a controlled scheduler with this
    /// strategy, seeded with the run's seed (nil: free-running, as the
    /// operating system schedules). See `ScenarioRunner+Schedule.swift`.
    public var schedule: ScheduleStrategy? = nil
    /// With `schedule`: keep the last `steps` scheduling steps up to and
    /// including `lastStep` (a finding's), and the event-trail entries
    /// recorded at them, for `RunResult.trace` (`mmulab replay --trail`).
    public var trace: (lastStep: UInt64, steps: Int)? = nil
    /// With `schedule`: follow these scheduling choices up to their
    /// `through` step, then the strategy (`mmulab run --schedule-file`).
    public var scheduleChoices: ScheduleChoices? = nil
    /// With `schedule`: write down the run's choices (`RunResult.recordedChoices`).
    public var recordsChoices = false
    /// With `schedule`: the run ends, as if its length ran out, once the
    /// scheduler is past this step (the actors stop at the end of their
    /// round, teardown and its checks run): a run cut at a finding's step.
    public var stopAtStep: UInt64? = nil
    /// With `schedule`: a run that reaches this step ends there, as a
    /// deadlock does, with a `stuck` finding (a bound on a run that might
    /// not end; nil: none).
    public var stepLimit: UInt64? = nil
    /// With `schedule`: hand over between the run's threads in user space
    /// (`ControlledScheduler.Configuration.handsOverInUserSpace`; the same
    /// run either way, only faster). Off: through the kernel, for comparison.
    public var handsOverInUserSpace = ControlledScheduler.canHandOverInUserSpace
    /// Polled every few milliseconds while the actors run: once it answers
    /// true the run stops early (the actors finish their step, teardown and
    /// the checks after it run as usual) and the result says `interrupted`.
    /// Answering true during teardown changes nothing.
    public var stopRequested: (@Sendable () -> Bool)? = nil
    /// The command that replays the run, as the command line has it (the
    /// scenario as the user named it, the plugins added); its seed is set
    /// to the run's. Without one, the result's replays the scenario by name
    /// with this run's seed, length, faults and plugin directory.
    public var replay: ReplayCommand? = nil

    public init() {}
}

/// Runs scenarios: sets the lab up, starts the workload and pressure
/// actors, stops them after the scenario's length, tears everything down
/// and reports what the oracle found.
public enum ScenarioRunner {
    /// A scenario that could not be set up (bad input), and where in the
    /// scenario the cause is written, if known (`file:line:column: field:
    /// message` then).
    public struct SetupFailure: Error, CustomStringConvertible {
        public var message: String
        public var mark: SourceMark?
        public var description: String { mark.map { $0.error(message).description } ?? message }
        /// As a scenario error (at the mark, or naming the scenario).
        public func scenarioError(_ scenario: Scenario) -> ScenarioError {
            mark?.error(message) ?? ScenarioError(file: scenario.name, line: nil, column: nil, field: "", message: message)
        }
    }

    /// Sets `scenario` up as `run` would (the machine, its spaces, every
    /// plugin loaded with its options, every binding attached) and tears
    /// it down again, running nothing: `mmulab scenarios check` accepts
    /// exactly what `run` accepts.
    public static func check(_ scenario: Scenario, pluginDirectory: String? = nil) throws(SetupFailure) {
        do {
            let lab = try Lab.build(scenario, pluginDirectory: pluginDirectory, faults: [], enabled: [])
            _ = lab.teardown()
        } catch {
            throw SetupFailure(message: error.message, mark: error.mark)
        }
    }

    public static func run(_ scenario: Scenario, options: RunOptions = RunOptions()) throws(SetupFailure) -> RunResult {
        if let schedule = options.schedule { return try runScheduled(scenario, options: options, strategy: schedule) }
        return try run(scenario, options: options, sync: SyncDomain(lockOrder: scenario.validatesLockOrder))
    }

    /// The run itself, on the calling thread, with every primitive made from `sync`.
    static func run(_ scenario: Scenario, options: RunOptions, sync: SyncDomain) throws(SetupFailure) -> RunResult {
        let seed = options.seed ?? scenario.seed
        let lab: Lab
        do {
            let window = options.trace.map { $0.lastStep - min($0.lastStep, UInt64($0.steps))...$0.lastStep }
            lab = try Lab.build(
                scenario, pluginDirectory: options.pluginDirectory, faults: options.faults,
                enabled: Set(Finding.Invariant.allCases.filter { scenario.checks.contains($0.check) }), sync: sync, traceWindow: window)
        } catch {
            throw SetupFailure(message: error.message, mark: error.mark)
        }
        let findings = lab.findings
        let machine = lab.machine
        if scenario.pressure.backgroundReclaim { machine.startBackgroundReclaim() }
        let counters = RunCounters(
            workloadThreads: scenario.workloads.reduce(0) { $0 + $1.threads }, attachChurners: scenario.pressure.attachChurn.count)
        let stop = StopFlag(afterStep: sync.isControlled ? options.stopAtStep : nil, sync: sync)
        var heartbeats: [Heartbeat] = []
        var threads: [any ThreadHandle] = []

        var replay: ReplayCommand
        if var given = options.replay {
            given.seed = seed
            replay = given
        } else {
            replay = ReplayCommand(
                scenario: scenario.name, seed: seed, seconds: options.seconds, injections: Injection.named(in: options.faults),
                pluginDirectory: options.pluginDirectory)
        }
        replay.schedule = options.schedule?.description
        replay.stopAtStep = sync.isControlled ? options.stopAtStep : nil
        // What a plugin oops ends with (if the command line installed its handler).
        PluginCrashReport.setContext("scenario \(scenario.name), seed \(seed)\nreplay: \(replay.commandLine)")

        lab.clock.start()
        for (index, body) in workloadThreads(lab, counters: counters).enumerated() {
            let heartbeat = Heartbeat(name: body.name, role: .workload)
            heartbeats.append(heartbeat)
            let threadSeed = SplitMix64.stream(index, of: seed).seedValue
            threads.append(machine.sync.spawnThread(named: body.name) { body.make(heartbeat).run(seed: threadSeed, stop: stop) })
        }
        for (name, body) in Pressure.actors(lab, scenario.pressure, seed: seed, stop: stop, counters: counters) {
            let heartbeat = Heartbeat(name: name, role: .pressure)
            heartbeats.append(heartbeat)
            threads.append(machine.sync.spawnThread(named: name) { body(heartbeat) })
        }

        // The main thread: length, primary checks, timeline, progress, watchdog.
        let clock = machine.sync  // the lab's only clock (virtual under --schedule)
        let start = clock.now()
        var lastSample = start
        var sampleInterval = options.progressInterval
        var timeline: [TimelineSample] = []
        var primaryChecks = PrimaryChecks()
        var watchdog = Watchdog(heartbeats, limit: .milliseconds(Int64(options.watchdogSeconds * 1_000)), start: start)
        var length = scenario.length
        if let seconds = options.seconds { length = .seconds(seconds) }
        if let operations = options.operations { length = .operations(operations) }
        func sample(at now: Duration) -> TimelineSample {
            TimelineSample(
                seconds: seconds(now - start), freeFrames: machine.memory.freeFrames, operations: counters.operations,
                invalidations: Dictionary(uniqueKeysWithValues: lab.trail.invalidationsByEvent.map { ($0.event, $0.count) }))
        }
        timeline.append(sample(at: start))
        var interrupted = false
        while true {
            machine.sync.sleep(for: .milliseconds(5))
            let now = clock.now()
            if options.stopRequested?() == true {
                interrupted = true
                break
            }
            if stop.isSet { break }  // past `stopAtStep`: the run's end, as its length's
            if case .seconds(let limit) = length, seconds(now - start) >= limit { break }
            if case .operations(let limit) = length, counters.operations >= limit { break }
            primaryChecks.collect(lab)
            for name in watchdog.check(at: now) {
                noteStuck(lab, name, "made no progress for \(options.watchdogSeconds) s (a callback that never returns, or a retry loop that never ends)")
            }
            if watchdog.nothingMoves { break }
            if now - lastSample >= sampleInterval {
                lastSample = now
                let point = sample(at: now)
                timeline.append(point)
                // A long run keeps every other sample and samples half as often: at most ~1000 points.
                if timeline.count > 1_000 {
                    timeline = timeline.enumerated().filter { $0.offset % 2 == 0 }.map(\.element)
                    sampleInterval *= 2
                }
                // Taken whether or not anyone watches: the snapshot takes the
                // trail's lock, a scheduling point under --schedule, so a run
                // with a progress line (`mmulab run`) and one without
                // (`mmulab replay`, `shrink`, tests) must both take it, or the
                // same seed schedules differently and the replay finds nothing.
                let progress = RunProgress(
                    elapsedSeconds: point.seconds, operations: point.operations, freeFrames: point.freeFrames,
                    findings: findings.total.load(ordering: .relaxed), invalidations: lab.trail.invalidationsByEvent)
                options.progress?(progress)
            }
        }
        stop.set()
        let elapsed = clock.now() - start
        // Every actor finishes its step and stops; one that does not within
        // the watchdog's limit is stuck (a deadlock, a callback that never
        // returns) and is left behind rather than joined, so the run still
        // ends with its report.
        while !watchdog.allFinishedOrStuck {
            machine.sync.sleep(for: .milliseconds(5))
            primaryChecks.collect(lab)
            for name in watchdog.check(at: clock.now()) {
                noteStuck(lab, name, "did not stop within \(options.watchdogSeconds) s of the run's end (a deadlock, or a callback that never returns)")
            }
        }
        for (index, thread) in threads.enumerated() where !watchdog.stuck.contains(index) { thread.join() }
        // The last point once every actor has finished its step: the run's
        // totals, with what reclaim did while the actors wound down (the
        // machine's statistics below are read as late).
        timeline.append(sample(at: clock.now()))

        let pluginStatistics = zip(scenario.plugins, lab.instances).flatMap { spec, made in
            made.enumerated().map { ("\(spec.name)#\($0.offset)", $0.element.statistics()) }
        }
        let machineStatistics = machine.statistics.all
        primaryChecks.collect(lab)
        if watchdog.stuck.isEmpty {
            let left = lab.teardown()
            primaryChecks.collect(lab)
            lab.checkFilesHoldEveryWrite()
            if !left.isEmpty {
                let now = lab.clock.nanoseconds
                findings.note(BugKey(invariant: .pinLeak, path: "teardown"), at: now) {
                    Finding(
                        invariant: .pinLeak,
                        detail: "\(left.count) frames still allocated after every plugin and address space went: \(left.prefix(4).joined(separator: ", "))",
                        seconds: lab.clock.seconds(now))
                }
            }
        }
        primaryChecks.collect(lab)
        let bugs = findings.all
        var result = RunResult(
            scenario: scenario.name, seed: seed, elapsedSeconds: seconds(elapsed),
            cpuReads: counters.total(.cpuReads), cpuWrites: counters.total(.cpuWrites),
            deviceReads: counters.total(.deviceReads), deviceWrites: counters.total(.deviceWrites),
            checkedReads: counters.total(.checkedReads), failedAccesses: counters.total(.failedAccesses),
            findings: bugs.map(\.first), findingsTotal: findings.count(of: findings.enabled),
            machineStatistics: machineStatistics, pluginStatistics: pluginStatistics)
        result.bugs = bugs
        result.findingsByInvariant = findings.byInvariant
        result.actors = heartbeats.map(\.activity)
        result.timeline = timeline
        result.interrupted = interrupted
        result.latencies = lab.latencies.joined().flatMap(\.summary)
        result.notes = lab.notes + primaryChecks.notes(lab)
        var configured = scenario
        configured.seed = seed
        configured.length = length
        result.scenarioYAML = ScenarioWriter.yaml(configured)
        let memory = machine.memory.configuration
        result.memory = MemorySummary(
            frames: memory.frames, nodes: memory.nodes, minFree: memory.minFree, lowFree: memory.lowFree, highFree: memory.highFree)
        result.replay = replay
        result.trailDigest = lab.trail.digest
        if sync.isControlled { result.scheduleEscapes = lab.instances.joined().flatMap(\.scheduleEscapes) }
        if options.trace != nil { result.trace = lab.trail.windowLines.map { TraceLine(step: $0.step, thread: "", text: $0.text) } }
        return result
    }

    /// The watchdog found actor `name` stuck.
    private static func noteStuck(_ lab: Lab, _ name: String, _ what: String) {
        let now = lab.clock.nanoseconds
        lab.findings.note(BugKey(invariant: .stuck, path: name), at: now) {
            // Under a controlled scheduler, what the actor is blocked on (or that it runs).
            let state = lab.machine.sync.scheduler.state(ofThreadNamed: name).map { "; it is \($0)" } ?? ""
            return Finding(invariant: .stuck, detail: "\(name) \(what)\(state)", seconds: lab.clock.seconds(now), actor: name)
        }
    }

    private static func seconds(_ duration: Duration) -> Double {
        Double(duration.components.seconds) + Double(duration.components.attoseconds) / 1e18
    }

    /// One maker per workload thread.
    private static func workloadThreads(_ lab: Lab, counters: RunCounters) -> [(name: String, make: @Sendable (Heartbeat) -> WorkloadThread)] {
        // Writer threads per mapping, so each page has exactly one writer.
        var writersOf: [String: Int] = [:]
        for workload in lab.scenario.workloads where workload.writes > 0 {
            writersOf["\(workload.space)/\(workload.mapping)", default: 0] += workload.threads
        }
        var nextWriter: [String: Int] = [:]
        var made: [(name: String, make: @Sendable (Heartbeat) -> WorkloadThread)] = []
        for workload in lab.scenario.workloads {
            let key = "\(workload.space)/\(workload.mapping)"
            let (spaceIndex, mapping) = lab.locate(workload.space, workload.mapping)
            for thread in 0..<workload.threads {
                var writerIndex: Int? = nil
                if workload.writes > 0 {
                    writerIndex = nextWriter[key, default: 0]
                    nextWriter[key, default: 0] += 1
                }
                var device: (PluginInstance, PluginInstance.Binding, String)? = nil
                if case .device(let name) = workload.actor {
                    let p = lab.scenario.plugins.firstIndex { $0.name == name }!
                    let b = lab.scenario.plugins[p].bindings.firstIndex { $0.space == workload.space && $0.mapping == workload.mapping }!
                    let i = thread % lab.instances[p].count
                    device = (lab.instances[p][i], lab.bindings[p][i][b], lab.instanceLabels[p][i])
                }
                let writers = writersOf[key] ?? 1
                let shard = counters.workloadShard(made.count)
                let index = writerIndex
                let chosen = device
                if writerIndex != nil {
                    // In writer-index order: the page's writer, for findings about its data.
                    mapping.writers.append(
                        ActorIdentity(name: "\(workload.name)-\(thread)", instance: device?.2, path: device == nil ? "CPU write" : "device write"))
                }
                made.append(("\(workload.name)-\(thread)", { heartbeat in
                    WorkloadThread(
                        lab: lab, spec: workload, mapping: mapping, space: lab.spaces[spaceIndex], writerIndex: index, writers: writers,
                        device: chosen, counters: shard, heartbeat: heartbeat)
                }))
            }
        }
        return made
    }
}

extension Scenario {
    /// Whether its runs validate lock order (the `lock-order` check: off,
    /// locks cost nothing extra).
    var validatesLockOrder: Bool { checks.contains(.lockOrder) }
}

extension Finding.Invariant {
    /// The scenario check that turns this on.
    var check: Scenario.Check {
        switch self {
        case .staleTranslation: return .staleTranslation
        case .useAfterFree: return .useAfterFree
        case .crossSpaceLeak: return .crossSpaceLeak
        case .lostWrite: return .lostWrite
        case .hotPageEvicted, .youngLost: return .hotPages
        case .pinLeak: return .pinLeak
        case .writeThroughReadOnly, .protNoneAccess: return .permissions
        case .contextViolation: return .contexts
        case .unpairedStartEnd, .retryFromBlockableStart: return .pairing
        case .pluginReported: return .pluginReports
        case .pluginContract, .leftBehind: return .pluginContract
        case .lockInversion, .lockHeldAtReturn: return .lockOrder
        case .stuck: return .watchdog
        }
    }
}

extension SplitMix64 {
    /// A seed drawn from this stream.
    var seedValue: UInt64 {
        var copy = self
        return copy.next()
    }
}
