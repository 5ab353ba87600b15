public import VirtualMemory

/// One observable of one step, both sides.
public struct ObservableResult: Sendable, Hashable {
    public let name: String
    /// nil: that side did not observe it (say, a child the other side lacks).
    public let kernel: Observable?
    public let model: Observable?
    /// The row of the known-differences list that expects this difference.
    public let known: KnownDifference?

    public var agrees: Bool { kernel?.value == model?.value }
}

/// How one step came out.
public enum StepStatus: Sendable, Hashable {
    case agree
    /// Differs, every difference listed as known.
    case knownDifference
    /// Differs somewhere the known-differences list does not expect.
    case differ
    /// Not run on this machine (why).
    case skipped(String)
}

public struct StepResult: Sendable, Hashable {
    public let step: Step
    public let status: StepStatus
    public let observables: [ObservableResult]

    public var differences: [ObservableResult] { observables.filter { !$0.agrees } }
}

public struct ScriptResult: Sendable, Hashable {
    public let script: Script
    /// The machine the kernel side ran on.
    public let facts: MachineFacts
    public let steps: [StepResult]
    /// The known-difference rows some difference of this script matched.
    public let matchedRows: Set<KnownDifference>

    public var compared: Int { steps.filter { if case .skipped = $0.status { false } else { true } }.count }
    public var agreeing: Int { steps.filter { $0.status == .agree }.count }
    public var unexpected: Int { steps.filter { $0.status == .differ }.count }
    public var known: Int { steps.filter { $0.status == .knownDifference }.count }
}

/// Runs scripts on the real kernel and in the model and compares them.
public struct KernelDiff: Sendable {
    public var runnerPath: String
    public var knownDifferences: KnownDifferences
    /// Faults injected into the model (the kernel is what it is).
    public var faults: MemoryFaultInjection

    public init(runnerPath: String = defaultRunnerPath(), knownDifferences: KnownDifferences = KnownDifferences(), faults: MemoryFaultInjection = []) {
        self.runnerPath = runnerPath
        self.knownDifferences = knownDifferences
        self.faults = faults
    }

    /// Runs one script on both sides, step by step. Throws
    /// `KernelUnavailable` when the real kernel cannot be used here, and
    /// `RunnerFailure` when the runner misbehaves.
    public func run(_ script: Script) throws -> ScriptResult {
        let kernel = try KernelSide(runnerPath: runnerPath)
        defer { kernel.finish() }
        let model = ModelSide(facts: kernel.facts, faults: faults)
        defer { model.finish() }
        var kernelView = Normaliser(script: script)
        var modelView = Normaliser(script: script)
        // What happened before the first step (the runner's own start-up) is no step's.
        _ = try kernel.snapshot()
        _ = model.snapshot()

        var results: [StepResult] = []
        var matchedRows: Set<KnownDifference> = []
        for step in script.steps {
            if let why = step.unsupported(on: kernel.facts) {
                results.append(StepResult(step: step, status: .skipped(why), observables: []))
                continue
            }
            let primitives = step.primitives(nodes: kernel.facts.nodes)
            var kernelSnap = SideSnapshot()
            var outcomes: [Outcome] = []
            for primitive in primitives { outcomes.append(try kernel.perform(primitive)) }
            kernelSnap = try kernel.snapshot()
            kernelSnap.outcomes = outcomes
            var modelSnap = SideSnapshot()
            outcomes = primitives.map(model.perform)
            modelSnap = model.snapshot()
            modelSnap.outcomes = outcomes

            let seen = kernelView.observe(step, primitives, kernelSnap)
            let expected = modelView.observe(step, primitives, modelSnap)
            var names: [String] = []
            for o in seen + expected where !names.contains(o.name) { names.append(o.name) }
            let observables = names.map { name -> ObservableResult in
                let k = seen.first { $0.name == name }
                let m = expected.first { $0.name == name }
                let row = k?.value == m?.value ? nil : knownDifferences.row(script: script.name, step: step.number, observable: name)
                if let row { matchedRows.insert(row) }
                return ObservableResult(name: name, kernel: k, model: m, known: row)
            }
            let differences = observables.filter { !$0.agrees }
            let status: StepStatus = differences.isEmpty ? .agree : differences.allSatisfy { $0.known != nil } ? .knownDifference : .differ
            results.append(StepResult(step: step, status: status, observables: observables))
        }
        return ScriptResult(script: script, facts: kernel.facts, steps: results, matchedRows: matchedRows)
    }

    /// Rows of the list that expected a difference where, in the scripts
    /// that ran, there was none: the model was fixed (remove the row), or
    /// the row names the wrong step or observable.
    public func staleRows(after results: [ScriptResult]) -> [KnownDifference] {
        let matched = results.reduce(into: Set<KnownDifference>()) { $0.formUnion($1.matchedRows) }
        return knownDifferences.rows.filter { row in
            guard !matched.contains(row) else { return false }
            return results.contains { result in
                guard row.script == "*" || row.script == result.script.name else { return false }
                return result.steps.contains { step in
                    if case .skipped = step.status { return false }
                    return row.step == nil || row.step == step.step.number
                }
            }
        }
    }
}
