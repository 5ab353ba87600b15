/// A part of a scenario a shrinker may drop: an actor (a workload, a source
/// of pressure, kswapd) or a plugin (with everything that uses it).
public enum ScenarioPart: Hashable, Sendable, CustomStringConvertible {
    case workload(String)
    case plugin(String)
    case backgroundReclaim
    case balloon
    case migration
    case ksm
    case oomKill
    /// The entries of a pressure list, by index.
    case churn(Int)
    case mprotect(Int)
    case fork(Int)
    case writeback(Int)
    case deviceMigration(Int)
    case attachChurn(Int)
    case exitRelease(Int)

    public var description: String {
        switch self {
        case .workload(let name): "workload '\(name)'"
        case .plugin(let name): "plugin '\(name)'"
        case .backgroundReclaim: "kswapd"
        case .balloon: "the balloon"
        case .migration: "NUMA migration"
        case .ksm: "KSM"
        case .oomKill: "the OOM kill"
        case .churn(let i): "churn[\(i)]"
        case .mprotect(let i): "mprotect[\(i)]"
        case .fork(let i): "fork[\(i)]"
        case .writeback(let i): "writeback[\(i)]"
        case .deviceMigration(let i): "device-migration[\(i)]"
        case .attachChurn(let i): "attach-churn[\(i)]"
        case .exitRelease(let i): "exit-release[\(i)]"
        }
    }
}

/// One change a shrinker tries on a scenario, and what it may cost.
public struct ScenarioEdit: Sendable {
    public enum Kind: Sendable, Hashable {
        /// Fewer threads: worth a later failure (the run may take longer to fail).
        case fewerThreads
        /// Less of something (memory, pages, a rate, a binding): taken if
        /// the failure comes no later.
        case smaller
        /// More of a rate (an actor that acts sooner): taken only if the
        /// failure comes sooner.
        case sooner
    }

    public var description: String
    public var kind: Kind
    public var scenario: Scenario
}

/// The ways a failing scenario is cut down (`Shrinker`): its parts, the
/// scenario with only some of them, and the smaller edits of what is left.
/// Every function here is pure; a result may be a scenario the reader
/// refuses (a mapping too small for a device target, say), which
/// `ScenarioReduction.isValid` tells before anything runs.
public enum ScenarioReduction {
    /// The parts of `scenario`, in a fixed order: workloads, then pressure,
    /// then plugins (the order delta debugging splits them in).
    public static func parts(of s: Scenario) -> [ScenarioPart] {
        var parts: [ScenarioPart] = s.workloads.map { .workload($0.name) }
        let p = s.pressure
        if p.backgroundReclaim { parts.append(.backgroundReclaim) }
        if p.balloonPages != nil { parts.append(.balloon) }
        if p.migrationRate != nil { parts.append(.migration) }
        if p.ksmScansPerSecond != nil { parts.append(.ksm) }
        if p.oomKill != nil { parts.append(.oomKill) }
        parts += p.churn.indices.map { .churn($0) }
        parts += p.mprotect.indices.map { .mprotect($0) }
        parts += p.forkRate.indices.map { .fork($0) }
        parts += p.writeback.indices.map { .writeback($0) }
        parts += p.deviceMigration.indices.map { .deviceMigration($0) }
        parts += p.attachChurn.indices.map { .attachChurn($0) }
        parts += p.exitRelease.indices.map { .exitRelease($0) }
        parts += s.plugins.map { .plugin($0.name) }
        return parts
    }

    /// `scenario` with only the parts in `kept` (of `parts(of: scenario)`):
    /// a dropped plugin takes its workloads and device pressure with it, and
    /// mappings and spaces nothing uses any more go (`pruned`).
    public static func keeping(_ kept: Set<ScenarioPart>, of scenario: Scenario) -> Scenario {
        var s = scenario
        s.plugins = scenario.plugins.filter { kept.contains(.plugin($0.name)) }
        let plugins = Set(s.plugins.map(\.name))
        func usable(_ workload: WorkloadSpec) -> Bool {
            guard case .device(let plugin) = workload.actor else { return true }
            return plugins.contains(plugin)
        }
        s.workloads = scenario.workloads.filter { kept.contains(.workload($0.name)) && usable($0) }
        let p = scenario.pressure
        if p.backgroundReclaim && !kept.contains(.backgroundReclaim) { s.pressure.backgroundReclaim = false }
        if !kept.contains(.balloon) { s.pressure.balloonPages = nil }
        if !kept.contains(.migration) { s.pressure.migrationRate = nil }
        if !kept.contains(.ksm) {
            s.pressure.ksmScansPerSecond = nil
            s.pressure.ksmDuplicates = 0
        }
        if !kept.contains(.oomKill) { s.pressure.oomKill = nil }
        func filter<T>(_ list: [T], _ part: (Int) -> ScenarioPart, usable: (T) -> Bool = { _ in true }) -> [T] {
            list.enumerated().filter { kept.contains(part($0.offset)) && usable($0.element) }.map(\.element)
        }
        s.pressure.churn = filter(p.churn, ScenarioPart.churn)
        s.pressure.mprotect = filter(p.mprotect, ScenarioPart.mprotect)
        s.pressure.forkRate = filter(p.forkRate, ScenarioPart.fork)
        s.pressure.writeback = filter(p.writeback, ScenarioPart.writeback)
        s.pressure.deviceMigration = filter(p.deviceMigration, ScenarioPart.deviceMigration) { plugins.contains($0.plugin) }
        s.pressure.attachChurn = filter(p.attachChurn, ScenarioPart.attachChurn) { plugins.contains($0.plugin) }
        s.pressure.exitRelease = filter(p.exitRelease, ScenarioPart.exitRelease) { plugins.contains($0.plugin) }
        return pruned(s)
    }

    /// `scenario` without the mappings nothing names (no binding, workload or
    /// pressure) and the spaces left with no mapping that nothing names.
    public static func pruned(_ scenario: Scenario) -> Scenario {
        var s = scenario
        var used = Set<String>()
        var usedSpaces = Set<String>()
        func use(_ space: String, _ mapping: String?) {
            usedSpaces.insert(space)
            if let mapping { used.insert(space + "/" + mapping) }
        }
        for plugin in s.plugins { for b in plugin.bindings { use(b.space, b.mapping) } }
        for w in s.workloads { use(w.space, w.mapping) }
        let p = s.pressure
        for t in p.churn + p.mprotect + p.forkRate + p.writeback { use(t.space, t.mapping) }
        for t in p.deviceMigration + p.attachChurn { use(t.space, t.mapping) }
        if let kill = p.oomKill { use(kill.space, nil) }
        s.spaces = s.spaces.compactMap { space in
            var space = space
            space.mappings = space.mappings.filter { used.contains(space.name + "/" + $0.name) }
            return space.mappings.isEmpty && !usedSpaces.contains(space.name) ? nil : space
        }
        return s
    }

    /// The smaller edits of `scenario`, in a fixed order: fewer threads and
    /// instances; bindings nothing uses; memory (nodes, frames, swap,
    /// watermarks, balloon); mapping and device-target sizes; lower rates;
    /// then higher rates of the actors (their events come sooner).
    public static func edits(of scenario: Scenario) -> [ScenarioEdit] {
        var edits: [ScenarioEdit] = []
        func add(_ kind: ScenarioEdit.Kind, _ description: String, _ change: (inout Scenario) -> Void) {
            var s = scenario
            change(&s)
            if s != scenario { edits.append(ScenarioEdit(description: description, kind: kind, scenario: pruned(s))) }
        }
        // Each number goes to its floor first, then to half of what it is:
        // one run where the floor will do, a halving search where it will not.
        func lowered(_ value: Int, floor: Int) -> [Int] {
            guard value > floor else { return [] }
            return value / 2 > floor ? [floor, value / 2] : [floor]
        }
        for (i, w) in scenario.workloads.enumerated() {
            for n in lowered(w.threads, floor: 1) {
                add(.fewerThreads, "workload '\(w.name)': \(n) thread\(n == 1 ? "" : "s"), not \(w.threads)") { $0.workloads[i].threads = n }
            }
        }
        for (i, p) in scenario.plugins.enumerated() {
            for n in lowered(p.instances, floor: 1) {
                add(.fewerThreads, "plugin '\(p.name)': \(n) instance\(n == 1 ? "" : "s"), not \(p.instances)") { $0.plugins[i].instances = n }
            }
        }
        for (i, p) in scenario.plugins.enumerated() {
            for (j, b) in p.bindings.enumerated() where !isUsed(b, of: p.name, in: scenario) {
                add(.smaller, "plugin '\(p.name)': no binding on \(b.space)/\(b.mapping) (nothing uses it)") { $0.plugins[i].bindings.remove(at: j) }
            }
        }
        let m = scenario.machine
        if m.nodes > 1 { add(.smaller, "1 node, not \(m.nodes)") { $0.machine.nodes = 1 } }
        // The floors the reader allows: anonymous memory fits in frames and
        // swap (unless an OOM kill is the point).
        let anonymous = scenario.spaces.flatMap(\.mappings).filter { $0.kind == .anonymous }.map(\.pages).reduce(0, +)
            + (scenario.pressure.balloonPages ?? 0)
        let fits = scenario.pressure.oomKill == nil
        let frameFloor = max(minimumFrames, fits ? anonymous - m.swapSlots : 0)
        let swapFloor = max(0, fits ? anonymous - m.frames : 0)
        for n in lowered(m.frames, floor: frameFloor) { add(.smaller, "\(n) frames, not \(m.frames)") { $0.machine.frames = n } }
        for n in lowered(m.swapSlots, floor: swapFloor) {
            add(.smaller, "\(n) swap slot\(n == 1 ? "" : "s"), not \(m.swapSlots)") { $0.machine.swapSlots = n }
        }
        if m.lowWatermark != nil || m.highWatermark != nil {
            add(.smaller, "the default watermarks") {
                $0.machine.lowWatermark = nil
                $0.machine.highWatermark = nil
            }
        }
        if let balloon = scenario.pressure.balloonPages {
            for n in lowered(balloon, floor: 1) { add(.smaller, "a \(n)-page balloon, not \(balloon)") { $0.pressure.balloonPages = n } }
        }
        for (i, space) in scenario.spaces.enumerated() {
            for (j, mapping) in space.mappings.enumerated() {
                for n in lowered(mapping.pages, floor: 1) {
                    add(.smaller, "\(space.name)/\(mapping.name): \(n) page\(n == 1 ? "" : "s"), not \(mapping.pages)") { $0.spaces[i].mappings[j].pages = n }
                }
            }
        }
        for (i, t) in scenario.pressure.deviceMigration.enumerated() {
            for n in lowered(t.pages, floor: 1) { add(.smaller, "device-migration[\(i)]: \(n) pages a round") { $0.pressure.deviceMigration[i].pages = n } }
        }
        for (i, t) in scenario.pressure.attachChurn.enumerated() {
            for n in lowered(t.pages, floor: 1) { add(.smaller, "attach-churn[\(i)]: \(n) pages a round") { $0.pressure.attachChurn[i].pages = n } }
        }
        for (i, t) in scenario.pressure.exitRelease.enumerated() {
            for n in lowered(t.pages, floor: 1) { add(.smaller, "exit-release[\(i)]: \(n) pages a space") { $0.pressure.exitRelease[i].pages = n } }
        }
        for factor in [Rate.lower, Rate.higher] { edits += rateEdits(of: scenario, factor) }
        return edits
    }

    /// The fewest frames an edit asks for (the reader's floor).
    static let minimumFrames = 64
    /// The highest rate an edit asks for: one a microsecond (ten steps of virtual time).
    static let maximumRate = 1_000_000

    enum Rate { case lower, higher }

    /// Every rate down to 1 a second or halved (`lower`, `smaller` edits: the
    /// actor still acts at once, then seldom), or quadrupled (`higher`, a
    /// `sooner` edit), within the reader's ranges; the OOM kill's delay goes
    /// the other way.
    static func rateEdits(of scenario: Scenario, _ direction: Rate) -> [ScenarioEdit] {
        let kind: ScenarioEdit.Kind = direction == .lower ? .smaller : .sooner
        var edits: [ScenarioEdit] = []
        func changed(_ rate: Int, cap: Int = maximumRate) -> [Int] {
            guard direction == .lower else { return rate < cap ? [min(rate * 4, cap)] : [] }
            guard rate > 1 else { return [] }
            return rate / 2 > 1 ? [1, rate / 2] : [1]
        }
        func add(_ description: String, _ change: (inout Scenario) -> Void) {
            var s = scenario
            change(&s)
            if s != scenario { edits.append(ScenarioEdit(description: description, kind: kind, scenario: s)) }
        }
        let word = direction == .lower ? "lower" : "higher"
        for (i, w) in scenario.workloads.enumerated() where w.rate > 0 {
            for new in changed(w.rate) { add("workload '\(w.name)': rate \(new), \(word)") { $0.workloads[i].rate = new } }
        }
        let p = scenario.pressure
        if let rate = p.migrationRate { for new in changed(rate) { add("migration rate \(new), \(word)") { $0.pressure.migrationRate = new } } }
        if let scans = p.ksmScansPerSecond { for new in changed(scans, cap: 10_000) { add("KSM \(new) scans a second, \(word)") { $0.pressure.ksmScansPerSecond = new } } }
        let rated: [(String, WritableKeyPath<PressureSpec, [PressureSpec.RatedTarget]>)] = [
            ("churn", \.churn), ("mprotect", \.mprotect), ("fork", \.forkRate), ("writeback", \.writeback),
        ]
        for (name, path) in rated {
            for (i, t) in p[keyPath: path].enumerated() {
                for new in changed(t.rate) { add("\(name)[\(i)]: rate \(new), \(word)") { $0.pressure[keyPath: path][i].rate = new } }
            }
        }
        let devices: [(String, WritableKeyPath<PressureSpec, [PressureSpec.DeviceTarget]>)] = [
            ("device-migration", \.deviceMigration), ("attach-churn", \.attachChurn),
        ]
        for (name, path) in devices {
            for (i, t) in p[keyPath: path].enumerated() {
                for new in changed(t.rate) { add("\(name)[\(i)]: rate \(new), \(word)") { $0.pressure[keyPath: path][i].rate = new } }
            }
        }
        for (i, t) in p.exitRelease.enumerated() {
            for new in changed(t.rate, cap: 100_000) { add("exit-release[\(i)]: rate \(new), \(word)") { $0.pressure.exitRelease[i].rate = new } }
        }
        if direction == .higher, let kill = p.oomKill, kill.afterMilliseconds > 0 {
            add("the OOM kill after \(kill.afterMilliseconds / 4) ms, sooner") { $0.pressure.oomKill?.afterMilliseconds = kill.afterMilliseconds / 4 }
        }
        return edits
    }

    /// Whether a workload or device pressure of plugin `plugin` uses binding `b`.
    static func isUsed(_ b: BindingSpec, of plugin: String, in s: Scenario) -> Bool {
        if s.workloads.contains(where: { $0.actor == .device(plugin: plugin) && $0.space == b.space && $0.mapping == b.mapping }) { return true }
        return (s.pressure.deviceMigration + s.pressure.attachChurn).contains { $0.plugin == plugin && $0.space == b.space && $0.mapping == b.mapping }
    }

    /// Whether the scenario reads back as itself from its YAML (the form a
    /// candidate run gets): the reader's every check passes.
    public static func isValid(_ scenario: Scenario) -> Bool {
        guard let read = try? ScenarioReader.read(yaml: ScenarioWriter.yaml(scenario), file: "<candidate>") else { return false }
        return ScenarioWriter.yaml(read) == ScenarioWriter.yaml(scenario)
    }
}
