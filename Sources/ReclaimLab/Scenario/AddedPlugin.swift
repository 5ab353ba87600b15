/// `mmulab run SCENARIO --plugin PATH`: any scenario stresses your plugin.
extension Scenario {
    /// The scenario with one more plugin: `plugin` (a bundled plugin's name
    /// or a path to a `.so`), one instance with `options`, bound to every
    /// mapping the scenario's plugins bind (every mapping, if it has no
    /// plugins), one device workload on each binding (uniform pages, one
    /// access in five a write), and a place in every device actor the
    /// scenario's plugins have: device migration and attach/detach churn
    /// on the same mappings, and exit-release (short-lived spaces bound to
    /// it that exit under it). Its name is the file's, made unique.
    ///
    /// Throws if `plugin` is neither a bundled name nor a path; whether the
    /// file loads is found out when the run sets up, as for a scenario's own.
    public func adding(plugin: String, options: String = "") throws(ScenarioError) -> Scenario {
        guard ScenarioReader.bundledPlugins.contains(plugin) || plugin.contains("/") else {
            throw ScenarioError(
                file: "--plugin", line: nil, column: nil, field: "",
                message: "'\(plugin)' is neither a bundled plugin (\(ScenarioReader.bundledPlugins.joined(separator: ", "))) nor a path to a .so")
        }
        var base = String(plugin.split(separator: "/").last ?? Substring(plugin))
        if base.hasSuffix(".so") { base.removeLast(3) }
        if base.hasPrefix("libmmulab-plugin-") { base.removeFirst("libmmulab-plugin-".count) }
        // A name a scenario file can hold (the scenario as it ran is written out).
        base = String(base.map { $0.isLetter || $0.isNumber || "-_.".contains($0) ? $0 : "-" })
        if base.isEmpty { base = "plugin" }
        var name = base
        var number = 2
        while plugins.contains(where: { $0.name == name }) || workloads.contains(where: { $0.name.hasPrefix("\(name) on ") }) {
            name = "\(base)-\(number)"
            number += 1
        }
        var targets: [(space: String, mapping: String)] = []
        for binding in plugins.flatMap(\.bindings) where !targets.contains(where: { $0 == (binding.space, binding.mapping) }) {
            targets.append((binding.space, binding.mapping))
        }
        if targets.isEmpty { targets = spaces.flatMap { space in space.mappings.map { (space.name, $0.name) } } }

        var scenario = self
        var spec = PluginSpec(plugin: plugin, name: name)
        spec.options = options
        spec.mark = SourceMark(file: "--plugin \(plugin)")
        spec.optionsMark = SourceMark(file: options.isEmpty ? "--plugin \(plugin)" : "--plugin-options \(options)")
        spec.bindings = targets.map { BindingSpec(space: $0.space, mapping: $0.mapping) }
        scenario.plugins.append(spec)
        for target in targets {
            var workload = WorkloadSpec(name: "\(name) on \(target.space)/\(target.mapping)", actor: .device(plugin: name), space: target.space, mapping: target.mapping)
            workload.writes = 0.2
            // Atomics where the scenario's devices do them on this mapping.
            workload.atomics = workloads.filter { $0.space == target.space && $0.mapping == target.mapping }.map(\.atomics).max() ?? 0
            scenario.workloads.append(workload)
        }
        scenario.pressure.deviceMigration += Self.joining(pressure.deviceMigration, as: name)
        scenario.pressure.attachChurn += Self.joining(pressure.attachChurn, as: name)
        if var exits = pressure.exitRelease.first {
            exits.plugin = name
            scenario.pressure.exitRelease.append(exits)
        }
        return scenario
    }

    /// One target for `name` per mapping `targets` name (at the first
    /// target's rate and size for that mapping).
    private static func joining(_ targets: [PressureSpec.DeviceTarget], as name: String) -> [PressureSpec.DeviceTarget] {
        var joined: [PressureSpec.DeviceTarget] = []
        for target in targets where !joined.contains(where: { $0.space == target.space && $0.mapping == target.mapping }) {
            var mine = target
            mine.plugin = name
            joined.append(mine)
        }
        return joined
    }
}
