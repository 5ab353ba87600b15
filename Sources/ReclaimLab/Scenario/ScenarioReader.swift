import Foundation
import VirtualMemory
import Yams

/// Reads a scenario from YAML, checking every field's type and range and
/// every reference between them (a binding's mapping, a workload's plugin).
/// The first problem is thrown as a `ScenarioError` naming the file, line
/// and field; nothing of a bad scenario is returned.
public enum ScenarioReader {
    /// Plugins the lab ships, usable by name (built beside mmulab): the
    /// three device plugins and the examples, one of them broken on purpose.
    public static let bundledPlugins = ["gpu", "rdma", "kvm", "mirror-c", "mirror-swift", "mirror-broken", "kernel-mirror"]

    /// Reads the scenario file at `path`.
    public static func read(path: String) throws(ScenarioError) -> Scenario {
        let text: String
        do {
            text = try TextFile.read(path)
        } catch {
            throw ScenarioError(file: path, line: nil, column: nil, field: "", message: error.description)
        }
        return try read(yaml: text, file: path)
    }

    /// Reads a scenario from standard input (named `<stdin>` in messages).
    public static func readStandardInput() throws(ScenarioError) -> Scenario {
        let text: String
        do {
            text = try TextFile.readStandardInput()
        } catch {
            throw ScenarioError(file: "<stdin>", line: nil, column: nil, field: "", message: error.description)
        }
        return try read(yaml: text, file: "<stdin>")
    }

    public static func read(yaml: String, file: String) throws(ScenarioError) -> Scenario {
        let root: Node
        do {
            guard let composed = try Yams.compose(yaml: yaml) else {
                throw ScenarioError(file: file, line: nil, column: nil, field: "", message: "the file is empty")
            }
            root = composed
        } catch let error as ScenarioError {
            throw error
        } catch let error as YamlError {
            throw yamlError(error, file: file)
        } catch {
            throw ScenarioError(file: file, line: nil, column: nil, field: "", message: "not YAML: \(error)")
        }
        return try scenario(YAMLField(node: root, path: "", file: file))
    }

    private static func yamlError(_ error: YamlError, file: String) -> ScenarioError {
        switch error {
        case .scanner(_, let problem, let mark, _), .parser(_, let problem, let mark, _), .composer(_, let problem, let mark, _):
            return ScenarioError(file: file, line: mark.line, column: mark.column, field: "", message: "YAML syntax: \(problem)")
        case .duplicatedKeysInMapping(let duplicates, let context):
            return ScenarioError(
                file: file, line: context.mark.line, column: context.mark.column, field: "",
                message: "duplicate keys: \(duplicates.joined(separator: ", "))")
        default:
            return ScenarioError(file: file, line: nil, column: nil, field: "", message: "not YAML: \(error)")
        }
    }

    // MARK: - The document

    private static func scenario(_ root: YAMLField) throws(ScenarioError) -> Scenario {
        let top = try root.mapping(keys: ["name", "summary", "seed", "length", "machine", "spaces", "plugins", "workloads", "pressure", "checks"])
        var scenario = Scenario(name: try top.required("name").name())
        if let summary = top["summary"] { scenario.summary = try summary.string() }
        if let seed = top["seed"] { scenario.seed = try seed.unsigned() }
        if let length = top["length"] { scenario.length = try self.length(length) }
        if let machine = top["machine"] {
            scenario.machine = try self.machine(machine)
            scenario.machineMark = machine.mark
        }
        let spaceFields = try top["spaces"]?.sequence() ?? []
        scenario.spaces = try spaceFields.map { (field) throws(ScenarioError) in try space(field) }
        try unique(scenario.spaces.map(\.name), spaceFields, what: "address space")
        let pluginFields = try top["plugins"]?.sequence() ?? []
        scenario.plugins = try pluginFields.map { (field) throws(ScenarioError) in try plugin(field, spaces: scenario.spaces) }
        try unique(scenario.plugins.map(\.name), pluginFields, what: "plugin")
        let workloadFields = try top.required("workloads").sequence()
        guard !workloadFields.isEmpty else { throw try top.required("workloads").error("a scenario needs at least one workload") }
        scenario.workloads = try workloadFields.map { (field) throws(ScenarioError) in
            try workload(field, spaces: scenario.spaces, plugins: scenario.plugins)
        }
        try unique(scenario.workloads.map(\.name), workloadFields, what: "workload")
        if let pressure = top["pressure"] { scenario.pressure = try self.pressure(pressure, spaces: scenario.spaces, plugins: scenario.plugins) }
        if let checks = top["checks"] { scenario.checks = try self.checks(checks) }
        try checkMachine(scenario, top)
        return scenario
    }

    private static func unique(_ names: [String], _ fields: [YAMLField], what: String) throws(ScenarioError) {
        var seen: Set<String> = []
        for (name, field) in zip(names, fields) where !seen.insert(name).inserted {
            throw field.error("a second \(what) named '\(name)'")
        }
    }

    /// `length: 30s` (a duration), or `{ seconds: 30 }` (also `{ seconds: 2m }`), or `{ operations: N }`.
    private static func length(_ field: YAMLField) throws(ScenarioError) -> Scenario.Length {
        if field.node.scalar != nil { return .seconds(try field.duration(in: 0.001...86_400)) }
        let fields = try field.mapping(keys: ["operations", "seconds"])
        switch (fields["operations"], fields["seconds"]) {
        case (let operations?, nil): return .operations(try operations.integer(in: 1...Int.max))
        case (nil, let seconds?): return .seconds(try seconds.duration(in: 0.001...86_400))
        default: throw field.error("give either 'operations' or 'seconds'")
        }
    }

    private static func machine(_ field: YAMLField) throws(ScenarioError) -> MachineSpec {
        let fields = try field.mapping(keys: [
            "frames", "nodes", "payload-size", "swap-slots", "low-watermark", "high-watermark", "movable-frames", "transparent-hugepages",
        ])
        var machine = MachineSpec()
        if let frames = fields["frames"] { machine.frames = try frames.integer(in: 64...(1 << 24)) }
        if let nodes = fields["nodes"] { machine.nodes = try nodes.integer(in: 1...8) }
        if let payload = fields["payload-size"] { machine.payloadSize = try payload.integer(in: 16...4_096) }
        if let swap = fields["swap-slots"] { machine.swapSlots = try swap.integer(in: 0...(1 << 24)) }
        if let low = fields["low-watermark"] { machine.lowWatermark = try low.integer(in: 0...(1 << 24)) }
        if let high = fields["high-watermark"] { machine.highWatermark = try high.integer(in: 1...(1 << 24)) }
        if let movable = fields["movable-frames"] { machine.movableFrames = try movable.integer(in: 0...(1 << 24)) }
        if let thp = fields["transparent-hugepages"] { machine.transparentHugePages = try thp.choice(TransparentHugePages.self) }
        let perNode = machine.frames / machine.nodes
        if let low = machine.lowWatermark, let high = machine.highWatermark, low >= high {
            throw fields["low-watermark"]!.error("the low watermark (\(low)) must be below the high one (\(high))")
        }
        if let high = machine.highWatermark, high >= perNode {
            throw fields["high-watermark"]!.error("the high watermark (\(high)) must be below the frames of a node (\(perNode))")
        }
        if machine.movableFrames > 0 {
            let memory = PhysicalMemory.Configuration(
                frames: machine.frames, nodes: machine.nodes, payloadSize: machine.payloadSize, lowFree: machine.lowWatermark,
                highFree: machine.highWatermark, movablePerNode: machine.movableFrames / machine.nodes)
            if let problem = memory.problem { throw fields["movable-frames"]!.error(problem) }
        }
        return machine
    }

    private static func space(_ field: YAMLField) throws(ScenarioError) -> SpaceSpec {
        let fields = try field.mapping(keys: ["name", "mappings"])
        var space = SpaceSpec(name: try fields.required("name").name())
        let mappingFields = try fields.required("mappings").sequence()
        for item in mappingFields {
            let m = try item.mapping(keys: ["name", "kind", "pages", "mergeable", "hot", "huge"])
            var mapping = MappingSpec(name: try m.required("name").name(), pages: try m.required("pages").integer(in: 1...(1 << 24)))
            if let kind = m["kind"] { mapping.kind = try kind.choice(MappingSpec.Kind.self) }
            if let mergeable = m["mergeable"] { mapping.mergeable = try mergeable.boolean() }
            if let hot = m["hot"] { mapping.hot = try hot.boolean() }
            if let huge = m["huge"] {
                mapping.huge = try huge.boolean()
                if mapping.huge && mapping.kind != .anonymous { throw huge.error("huge pages are for anonymous mappings only") }
            }
            space.mappings.append(mapping)
        }
        try unique(space.mappings.map(\.name), mappingFields, what: "mapping in '\(space.name)'")
        return space
    }

    /// The space and mapping named by `fields` (keys `space`, `mapping`).
    private static func target(
        _ fields: YAMLMapping, spaces: [SpaceSpec], mappingRequired: Bool = true
    ) throws(ScenarioError) -> (space: String, mapping: String?) {
        let spaceField = try fields.required("space")
        let spaceName = try spaceField.name()
        guard let space = spaces.first(where: { $0.name == spaceName }) else {
            throw spaceField.error("no address space named '\(spaceName)' (spaces: \(spaces.map(\.name).joined(separator: ", ")))")
        }
        guard let mappingField = mappingRequired ? try fields.required("mapping") : fields["mapping"] else { return (spaceName, nil) }
        let mappingName = try mappingField.name()
        guard space.mappings.contains(where: { $0.name == mappingName }) else {
            throw mappingField.error(
                "'\(spaceName)' has no mapping named '\(mappingName)' (mappings: \(space.mappings.map(\.name).joined(separator: ", ")))")
        }
        return (spaceName, mappingName)
    }

    private static func plugin(_ field: YAMLField, spaces: [SpaceSpec]) throws(ScenarioError) -> PluginSpec {
        let fields = try field.mapping(keys: ["plugin", "name", "options", "instances", "bindings"])
        let pluginField = try fields.required("plugin")
        let plugin = try pluginField.string()
        guard bundledPlugins.contains(plugin) || plugin.contains("/") else {
            throw pluginField.error("'\(plugin)' is neither a bundled plugin (\(bundledPlugins.joined(separator: ", "))) nor a path to a .so")
        }
        let defaultName = plugin.contains("/") ? String(plugin.split(separator: "/").last!) : plugin
        var spec = PluginSpec(plugin: plugin, name: try fields["name"]?.name() ?? defaultName)
        spec.mark = pluginField.mark
        spec.optionsMark = pluginField.mark
        if let options = fields["options"] {
            spec.options = try options.string()
            spec.optionsMark = options.mark
        }
        if let instances = fields["instances"] { spec.instances = try instances.integer(in: 1...64) }
        for item in try fields["bindings"]?.sequence() ?? [] {
            let b = try item.mapping(keys: ["space", "mapping", "device-address", "write", "pinned"])
            let (space, mapping) = try target(b, spaces: spaces)
            var binding = BindingSpec(space: space, mapping: mapping!)
            binding.mark = item.mark
            if let address = b["device-address"] {
                let value = try address.unsigned()
                guard value % 4096 == 0 else { throw address.error("0x\(String(value, radix: 16)) is not page aligned") }
                binding.deviceAddress = value
            }
            if let write = b["write"] { binding.write = try write.boolean() }
            if let pinned = b["pinned"] { binding.pinned = try pinned.boolean() }
            if let other = overlapping(binding, spec.bindings, spaces: spaces) {
                throw item.error("this binding overlaps bindings[\(other)] in the device's address space (a device address reaches one page)")
            }
            spec.bindings.append(binding)
        }
        return spec
    }

    private static func workload(_ field: YAMLField, spaces: [SpaceSpec], plugins: [PluginSpec]) throws(ScenarioError) -> WorkloadSpec {
        let fields = try field.mapping(keys: ["name", "actor", "space", "mapping", "threads", "pattern", "zipf-s", "writes", "atomics", "rate"])
        let (space, mapping) = try target(fields, spaces: spaces)
        let actorField = try fields.required("actor")
        let actorName = try actorField.name()
        let actor: WorkloadSpec.Actor
        if actorName == "cpu" {
            actor = .cpu
        } else {
            guard let plugin = plugins.first(where: { $0.name == actorName }) else {
                throw actorField.error("'\(actorName)' is neither 'cpu' nor a plugin of this scenario (plugins: \(plugins.map(\.name).joined(separator: ", ")))")
            }
            guard plugin.bindings.contains(where: { $0.space == space && $0.mapping == mapping }) else {
                throw actorField.error("plugin '\(actorName)' has no binding on \(space)/\(mapping!): its device cannot reach that mapping")
            }
            actor = .device(plugin: actorName)
        }
        var workload = WorkloadSpec(name: try fields.required("name").label(), actor: actor, space: space, mapping: mapping!)
        if let threads = fields["threads"] { workload.threads = try threads.integer(in: 1...64) }
        if let pattern = fields["pattern"] {
            switch try pattern.string() {
            case "uniform": workload.pattern = .uniform
            case "sequential": workload.pattern = .sequential
            case "zipfian": workload.pattern = .zipfian(s: try fields["zipf-s"]?.number(in: 0.01...10) ?? 1.0)
            case let other: throw pattern.error("'\(other)' is not one of uniform, sequential, zipfian")
            }
        }
        if let s = fields["zipf-s"], workload.pattern == .uniform || workload.pattern == .sequential {
            throw s.error("zipf-s applies to pattern: zipfian only")
        }
        if let writes = fields["writes"] { workload.writes = try writes.number(in: 0...1) }
        if let atomics = fields["atomics"] {
            guard case .device = workload.actor else { throw atomics.error("atomics are a device's: the CPU's writes are plain") }
            workload.atomics = try atomics.number(in: 0...1)
        }
        if let rate = fields["rate"] { workload.rate = try rate.integer(in: 0...100_000_000) }
        return workload
    }

    private static func pressure(_ field: YAMLField, spaces: [SpaceSpec], plugins: [PluginSpec]) throws(ScenarioError) -> PressureSpec {
        let fields = try field.mapping(keys: [
            "balloon-pages", "background-reclaim", "migration-rate", "ksm", "churn", "mprotect", "fork", "oom-kill",
            "device-migration", "attach-churn", "writeback", "exit-release", "lazy-free", "compaction-rate", "uffd-snapshot", "mremap",
            "collapse",
        ])
        var pressure = PressureSpec()
        if let balloon = fields["balloon-pages"] { pressure.balloonPages = try balloon.integer(in: 1...(1 << 24)) }
        if let kswapd = fields["background-reclaim"] { pressure.backgroundReclaim = try kswapd.boolean() }
        if let migration = fields["migration-rate"] { pressure.migrationRate = try migration.integer(in: 1...10_000_000) }
        if let compaction = fields["compaction-rate"] { pressure.compactionRate = try compaction.integer(in: 1...10_000_000) }
        if let collapse = fields["collapse"] {
            let c = try collapse.mapping(keys: ["scans-per-second"])
            pressure.collapseScansPerSecond = try c.required("scans-per-second").integer(in: 1...10_000)
        }
        if let ksm = fields["ksm"] {
            let k = try ksm.mapping(keys: ["scans-per-second", "duplicates"])
            pressure.ksmScansPerSecond = try k.required("scans-per-second").integer(in: 1...10_000)
            if let duplicates = k["duplicates"] { pressure.ksmDuplicates = try duplicates.number(in: 0...1) }
        }
        func rated(_ key: String, mappingRequired: Bool, window: Bool = false) throws(ScenarioError) -> [PressureSpec.RatedTarget] {
            var targets: [PressureSpec.RatedTarget] = []
            for item in try fields[key]?.sequence() ?? [] {
                let t = try item.mapping(keys: (mappingRequired ? ["space", "mapping", "rate"] : ["space", "rate"]) + (window ? ["pages"] : []))
                let (space, mapping) = try target(t, spaces: spaces, mappingRequired: mappingRequired)
                var pages: Int? = nil
                if let field = t["pages"] {
                    let size = spaces.first { $0.name == space }!.mappings.first { $0.name == mapping }!.pages
                    pages = try field.integer(in: 1...size)
                }
                targets.append(.init(space: space, mapping: mapping, rate: try t.required("rate").integer(in: 1...1_000_000), pages: pages))
            }
            return targets
        }
        pressure.churn = try rated("churn", mappingRequired: true)
        for target in pressure.churn where spaces.first(where: { $0.name == target.space })!.mappings.first(where: { $0.name == target.mapping })!.kind != .anonymous {
            throw fields["churn"]!.error("\(target.space)/\(target.mapping ?? "") is a file mapping; churn remaps anonymous memory only")
        }
        pressure.mprotect = try rated("mprotect", mappingRequired: true, window: true)
        pressure.userfaultSnapshot = try rated("uffd-snapshot", mappingRequired: true)
        pressure.mremap = try rated("mremap", mappingRequired: true)
        for (key, targets) in [("uffd-snapshot", pressure.userfaultSnapshot), ("mremap", pressure.mremap)] {
            for target in targets where spaces.first(where: { $0.name == target.space })!.mappings.first(where: { $0.name == target.mapping })!.kind != .anonymous {
                throw fields[key]!.error("\(target.space)/\(target.mapping ?? "") is a file mapping; \(key) works on anonymous memory only")
            }
        }
        for target in pressure.mremap where pressure.churn.contains(where: { $0.space == target.space && $0.mapping == target.mapping }) {
            throw fields["mremap"]!.error("\(target.space)/\(target.mapping ?? "") is churned too: mremap moves it back to where churn maps it anew")
        }
        pressure.forkRate = try rated("fork", mappingRequired: false)
        if let oom = fields["oom-kill"] {
            let o = try oom.mapping(keys: ["space", "after-ms"])
            let (space, _) = try target(o, spaces: spaces, mappingRequired: false)
            pressure.oomKill = .init(space: space, afterMilliseconds: try o.required("after-ms").integer(in: 0...86_400_000))
        }
        func deviceTargets(_ key: String, pinnable: Bool = false) throws(ScenarioError) -> [PressureSpec.DeviceTarget] {
            var targets: [PressureSpec.DeviceTarget] = []
            for item in try fields[key]?.sequence() ?? [] {
                let t = try item.mapping(keys: ["plugin", "space", "mapping", "rate", "pages"] + (pinnable ? ["pinned"] : []))
                let (space, mapping) = try target(t, spaces: spaces)
                let plugin = try pluginName(t.required("plugin"), plugins: plugins)
                targets.append(.init(
                    plugin: plugin, space: space, mapping: mapping!, rate: try t.required("rate").integer(in: 1...1_000_000),
                    pages: try t["pages"]?.integer(in: 1...(1 << 16)) ?? 8, pinned: try t["pinned"]?.boolean() ?? false))
            }
            return targets
        }
        pressure.deviceMigration = try deviceTargets("device-migration")
        for migration in pressure.deviceMigration where !(plugins.first { $0.name == migration.plugin }!.bindings.contains {
            $0.space == migration.space && $0.mapping == migration.mapping
        }) {
            throw fields["device-migration"]!.error("plugin '\(migration.plugin)' has no binding on \(migration.space)/\(migration.mapping) to migrate")
        }
        pressure.attachChurn = try deviceTargets("attach-churn", pinnable: true)
        pressure.writeback = try rated("writeback", mappingRequired: true)
        for target in pressure.writeback {
            let mapping = spaces.first { $0.name == target.space }!.mappings.first { $0.name == target.mapping }!
            if mapping.kind != .file {
                throw fields["writeback"]!.error("\(target.space)/\(target.mapping ?? "") is not a file mapping; writeback needs kind: file")
            }
        }
        pressure.lazyFree = try windows("lazy-free", fields, spaces: spaces, anonymousOnly: "MADV_FREE applies to anonymous memory only")
        for item in try fields["exit-release"]?.sequence() ?? [] {
            let e = try item.mapping(keys: ["plugin", "rate", "pages"])
            pressure.exitRelease.append(.init(
                plugin: try pluginName(e.required("plugin"), plugins: plugins), rate: try e.required("rate").integer(in: 1...100_000),
                pages: try e["pages"]?.integer(in: 1...(1 << 16)) ?? 16))
        }
        return pressure
    }

    /// The window targets under `key`: space, mapping, rate, and pages per
    /// step (default 16, at most the mapping's size). With `anonymousOnly`,
    /// a file mapping is refused with that reason.
    private static func windows(
        _ key: String, _ fields: YAMLMapping, spaces: [SpaceSpec], anonymousOnly: String? = nil
    ) throws(ScenarioError) -> [PressureSpec.WindowTarget] {
        var targets: [PressureSpec.WindowTarget] = []
        for item in try fields[key]?.sequence() ?? [] {
            let t = try item.mapping(keys: ["space", "mapping", "rate", "pages"])
            let (space, mapping) = try target(t, spaces: spaces)
            let spec = spaces.first { $0.name == space }!.mappings.first { $0.name == mapping }!
            if let anonymousOnly, spec.kind != .anonymous {
                throw item.error("\(space)/\(mapping!) is a file mapping: \(anonymousOnly)")
            }
            let pages = try t["pages"]?.integer(in: 1...(1 << 16)) ?? 16
            if pages > spec.pages { throw t["pages"]!.error("\(pages) pages do not fit in \(space)/\(mapping!) (\(spec.pages) pages)") }
            targets.append(.init(space: space, mapping: mapping!, rate: try t.required("rate").integer(in: 1...1_000_000), pages: pages))
        }
        return targets
    }

    /// The index of a binding among `earlier` whose device window overlaps
    /// `binding`'s, if one does: both at explicit device addresses whose
    /// ranges meet, or both at their mapping's own address (GPU SVM style)
    /// on the same mapping. (One at its mapping's address and one explicit
    /// cannot be compared before the mappings are placed; the plugin judges.)
    private static func overlapping(_ binding: BindingSpec, _ earlier: [BindingSpec], spaces: [SpaceSpec]) -> Int? {
        func pages(_ b: BindingSpec) -> UInt64 {
            UInt64(spaces.first { $0.name == b.space }!.mappings.first { $0.name == b.mapping }!.pages)
        }
        return earlier.firstIndex { other in
            switch (binding.deviceAddress, other.deviceAddress) {
            case (let a?, let b?): return a < b + pages(other) * 4096 && b < a + pages(binding) * 4096
            case (nil, nil): return binding.space == other.space && binding.mapping == other.mapping
            default: return false
            }
        }
    }

    /// A plugin of the scenario, by the name workloads use for it.
    private static func pluginName(_ field: YAMLField, plugins: [PluginSpec]) throws(ScenarioError) -> String {
        let name = try field.name()
        guard plugins.contains(where: { $0.name == name }) else {
            throw field.error("no plugin named '\(name)' in this scenario (plugins: \(plugins.map(\.name).joined(separator: ", ")))")
        }
        return name
    }

    private static func checks(_ field: YAMLField) throws(ScenarioError) -> Set<Scenario.Check> {
        if field.node.scalar?.string == "all" { return Set(Scenario.Check.allCases) }
        var checks: Set<Scenario.Check> = []
        for item in try field.sequence() { checks.insert(try item.choice(Scenario.Check.self)) }
        return checks
    }

    /// Whole-scenario sanity: the anonymous memory must fit in frames plus
    /// swap, or the run is an OOM test it does not say it is.
    private static func checkMachine(_ scenario: Scenario, _ top: YAMLMapping) throws(ScenarioError) {
        let anonymous = scenario.spaces.flatMap(\.mappings).filter { $0.kind == .anonymous }.reduce(0) { $0 + $1.pages }
        let room = scenario.machine.frames + scenario.machine.swapSlots
        if anonymous + (scenario.pressure.balloonPages ?? 0) > room && scenario.pressure.oomKill == nil {
            throw (top["spaces"] ?? top.owner).error(
                "\(anonymous) anonymous pages\(scenario.pressure.balloonPages.map { " and a \($0)-page balloon" } ?? "") do not fit in "
                    + "\(scenario.machine.frames) frames and \(scenario.machine.swapSlots) swap slots (add swap, or say oom-kill)")
        }
    }
}
