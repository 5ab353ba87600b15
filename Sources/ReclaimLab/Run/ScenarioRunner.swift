import LabSync
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

    public init() {}
}

/// Runs scenarios: sets the lab up, starts the workload and pressure
/// actors, stops them after the scenario's length, tears everything down
/// and reports what the oracle found.
public enum ScenarioRunner {
    /// A scenario that could not be set up (bad input).
    public struct SetupFailure: Error, CustomStringConvertible {
        public var description: String
    }

    public static func run(_ scenario: Scenario, options: RunOptions = RunOptions()) throws(SetupFailure) -> RunResult {
        let seed = options.seed ?? scenario.seed
        let lab: Lab
        do {
            lab = try Lab.build(scenario, pluginDirectory: options.pluginDirectory, faults: options.faults)
        } catch {
            throw SetupFailure(description: error.description)
        }
        let machine = lab.machine
        if scenario.pressure.backgroundReclaim { machine.startBackgroundReclaim() }
        let counters = RunCounters()
        let findings = FindingLog()
        let stop = StopFlag()
        var heartbeats: [Heartbeat] = []
        var threads: [any ThreadHandle] = []

        for (index, body) in workloadThreads(lab, counters: counters, findings: findings).enumerated() {
            let heartbeat = Heartbeat(name: body.name)
            heartbeats.append(heartbeat)
            let threadSeed = SplitMix64.stream(index, of: seed).seedValue
            threads.append(machine.sync.spawnThread(named: body.name) { body.make(heartbeat).run(seed: threadSeed, stop: stop) })
        }
        for (name, body) in Pressure.actors(lab, scenario.pressure, seed: seed, stop: stop) {
            let heartbeat = Heartbeat(name: name)
            heartbeats.append(heartbeat)
            threads.append(machine.sync.spawnThread(named: name) { body(heartbeat) })
        }

        // The main thread: length, progress, watchdog.
        let clock = ContinuousClock()
        let start = clock.now
        var lastProgress = start
        var lastBeats = heartbeats.map { $0.beats.load(ordering: .relaxed) }
        var lastChange = [ContinuousClock.Instant](repeating: start, count: heartbeats.count)
        var reportedStuck = Set<Int>()
        var length = scenario.length
        if let seconds = options.seconds { length = .seconds(seconds) }
        if let operations = options.operations { length = .operations(operations) }
        while true {
            machine.sync.sleep(for: .milliseconds(5))
            let now = clock.now
            let elapsed = Double((now - start).components.attoseconds) / 1e18 + Double((now - start).components.seconds)
            if case .seconds(let seconds) = length, elapsed >= seconds { break }
            if case .operations(let limit) = length, counters.operations >= limit { break }
            for (index, heartbeat) in heartbeats.enumerated() where !heartbeat.finished.load(ordering: .acquiring) {
                let beats = heartbeat.beats.load(ordering: .relaxed)
                if beats != lastBeats[index] {
                    lastBeats[index] = beats
                    lastChange[index] = now
                } else if now - lastChange[index] > .milliseconds(Int64(options.watchdogSeconds * 1_000)), reportedStuck.insert(index).inserted {
                    findings.note(.stuck, "\(heartbeat.name) made no progress for \(options.watchdogSeconds) s (a callback that never returns, or a retry loop that never ends)")
                }
            }
            if reportedStuck.count == heartbeats.count && !heartbeats.isEmpty { break }  // nothing moves any more
            if let progress = options.progress, now - lastProgress >= options.progressInterval {
                lastProgress = now
                progress(RunProgress(
                    elapsedSeconds: elapsed, operations: counters.operations, freeFrames: machine.memory.freeFrames,
                    findings: findings.total.load(ordering: .relaxed) + machine.violations.count, invalidations: []))
            }
        }
        stop.set()
        let elapsed = clock.now - start
        // A stuck actor is left behind rather than joined (the run is over).
        for (index, thread) in threads.enumerated() where !reportedStuck.contains(index) { thread.join() }

        let pluginStatistics = zip(scenario.plugins, lab.instances).flatMap { spec, made in
            made.enumerated().map { ("\(spec.name)#\($0.offset)", $0.element.statistics()) }
        }
        let machineStatistics = machine.statistics.all
        collectPrimaryFindings(machine, into: findings)
        if reportedStuck.isEmpty {
            let left = lab.teardown()
            if !left.isEmpty {
                findings.note(.pinLeak, "\(left.count) frames still allocated after every plugin and address space went: \(left.prefix(4).joined(separator: ", "))")
            }
        }
        let enabled = scenario.checks
        let kept = findings.all.filter { enabled.contains($0.invariant.check) }
        return RunResult(
            scenario: scenario.name, seed: seed,
            elapsedSeconds: Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18,
            cpuReads: counters.cpuReads.load(ordering: .relaxed), cpuWrites: counters.cpuWrites.load(ordering: .relaxed),
            deviceReads: counters.deviceReads.load(ordering: .relaxed), deviceWrites: counters.deviceWrites.load(ordering: .relaxed),
            checkedReads: counters.checkedReads.load(ordering: .relaxed), failedAccesses: counters.failedAccesses.load(ordering: .relaxed),
            findings: kept, findingsTotal: findings.count(of: Set(Finding.Invariant.allCases.filter { enabled.contains($0.check) })),
            machineStatistics: machineStatistics, pluginStatistics: pluginStatistics)
    }

    /// What the primary's own checks, the notifier core and the
    /// synchronisation layer recorded.
    private static func collectPrimaryFindings(_ machine: Machine, into findings: FindingLog) {
        for violation in machine.violations.snapshot {
            findings.note(violation.kind == .staleTranslation ? .staleTranslation : .useAfterFree, "\(violation)")
        }
        for violation in machine.notifierCore.contractViolations.snapshot { findings.note(.unpairedStartEnd, "\(violation)") }
        for violation in machine.sync.contextViolations.snapshot { findings.note(.contextViolation, "\(violation)") }
    }

    /// One maker per workload thread.
    private static func workloadThreads(_ lab: Lab, counters: RunCounters, findings: FindingLog) -> [(name: String, make: @Sendable (Heartbeat) -> WorkloadThread)] {
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
                var device: (PluginInstance, PluginInstance.Binding)? = nil
                if case .device(let name) = workload.actor {
                    let p = lab.scenario.plugins.firstIndex { $0.name == name }!
                    let b = lab.scenario.plugins[p].bindings.firstIndex { $0.space == workload.space && $0.mapping == workload.mapping }!
                    let i = thread % lab.instances[p].count
                    device = (lab.instances[p][i], lab.bindings[p][i][b])
                }
                let writers = writersOf[key] ?? 1
                let index = writerIndex
                let chosen = device
                made.append(("\(workload.name)-\(thread)", { heartbeat in
                    WorkloadThread(
                        lab: lab, spec: workload, mapping: mapping, space: lab.spaces[spaceIndex], writerIndex: index, writers: writers,
                        device: chosen, counters: counters, findings: findings, heartbeat: heartbeat)
                }))
            }
        }
        return made
    }
}

extension Finding.Invariant {
    /// The scenario check that turns this on.
    var check: Scenario.Check {
        switch self {
        case .staleTranslation: return .staleTranslation
        case .useAfterFree: return .useAfterFree
        case .crossSpaceLeak: return .crossSpaceLeak
        case .lostWrite: return .lostWrite
        case .hotPageEvicted: return .hotPages
        case .pinLeak: return .pinLeak
        case .contextViolation: return .contexts
        case .unpairedStartEnd: return .pairing
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
