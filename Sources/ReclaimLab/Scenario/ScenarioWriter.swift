import VirtualMemory

/// A scenario as the YAML `ScenarioReader` reads: every field spelled out
/// (defaults too), so what a report shows is the scenario as it ran, and
/// reading it back gives the same scenario.
public enum ScenarioWriter {
    public static func yaml(_ s: Scenario) -> String {
        var lines: [String] = []
        lines.append("name: \(quote(s.name))")
        if !s.summary.isEmpty { lines.append("summary: \(quote(s.summary))") }
        lines.append("seed: \(s.seed)")
        switch s.length {
        case .operations(let count): lines.append("length: { operations: \(count) }")
        case .seconds(let seconds): lines.append("length: { seconds: \(number(seconds)) }")
        }
        var machine = [
            "frames: \(s.machine.frames)", "nodes: \(s.machine.nodes)", "payload-size: \(s.machine.payloadSize)",
            "swap-slots: \(s.machine.swapSlots)",
        ]
        if let low = s.machine.lowWatermark { machine.append("low-watermark: \(low)") }
        if let high = s.machine.highWatermark { machine.append("high-watermark: \(high)") }
        if s.machine.movableFrames > 0 { machine.append("movable-frames: \(s.machine.movableFrames)") }
        if s.machine.transparentHugePages != .never { machine.append("transparent-hugepages: \(s.machine.transparentHugePages.rawValue)") }
        lines.append("machine: " + flow(machine))
        lines.append(s.spaces.isEmpty ? "spaces: []" : "spaces:")
        for space in s.spaces {
            lines.append("  - name: \(quote(space.name))")
            lines.append("    mappings:")
            for m in space.mappings {
                lines.append("      - " + flow([
                    "name: \(quote(m.name))", "kind: \(m.kind.rawValue)", "pages: \(m.pages)", "mergeable: \(m.mergeable)", "hot: \(m.hot)",
                ] + (m.huge ? ["huge: true"] : [])))
            }
        }
        lines.append(s.plugins.isEmpty ? "plugins: []" : "plugins:")
        for p in s.plugins {
            lines.append("  - plugin: \(quote(p.plugin))")
            lines.append("    name: \(quote(p.name))")
            lines.append("    options: \(quote(p.options))")
            lines.append("    instances: \(p.instances)")
            lines.append(p.bindings.isEmpty ? "    bindings: []" : "    bindings:")
            for b in p.bindings {
                var fields = ["space: \(quote(b.space))", "mapping: \(quote(b.mapping))"]
                if let address = b.deviceAddress { fields.append("device-address: 0x" + String(address, radix: 16)) }
                fields += ["write: \(b.write)", "pinned: \(b.pinned)"]
                lines.append("      - " + flow(fields))
            }
        }
        lines.append("workloads:")
        for w in s.workloads {
            var fields = ["name: \(quote(w.name))"]
            switch w.actor {
            case .cpu: fields.append("actor: cpu")
            case .device(let plugin): fields.append("actor: \(quote(plugin))")
            }
            fields += ["space: \(quote(w.space))", "mapping: \(quote(w.mapping))", "threads: \(w.threads)"]
            switch w.pattern {
            case .uniform: fields.append("pattern: uniform")
            case .sequential: fields.append("pattern: sequential")
            case .zipfian(let exponent): fields += ["pattern: zipfian", "zipf-s: \(number(exponent))"]
            }
            fields += ["writes: \(number(w.writes))"]
            if w.atomics > 0 { fields.append("atomics: \(number(w.atomics))") }
            fields.append("rate: \(w.rate)")
            lines.append("  - " + flow(fields))
        }
        lines += pressure(s.pressure)
        if s.checks != Set(Scenario.Check.allCases) {
            lines.append("checks: [" + Scenario.Check.allCases.filter { s.checks.contains($0) }.map(\.rawValue).joined(separator: ", ") + "]")
        }
        return lines.joined(separator: "\n") + "\n"
    }

    private static func pressure(_ p: PressureSpec) -> [String] {
        var lines = ["pressure:", "  background-reclaim: \(p.backgroundReclaim)"]
        if let pages = p.balloonPages { lines.append("  balloon-pages: \(pages)") }
        if let rate = p.migrationRate { lines.append("  migration-rate: \(rate)") }
        if let rate = p.compactionRate { lines.append("  compaction-rate: \(rate)") }
        if let scans = p.collapseScansPerSecond { lines.append("  collapse: { scans-per-second: \(scans) }") }
        if let scans = p.ksmScansPerSecond {
            lines.append("  ksm: " + flow(["scans-per-second: \(scans)", "duplicates: \(number(p.ksmDuplicates))"]))
        }
        func rated(_ key: String, _ targets: [PressureSpec.RatedTarget]) {
            guard !targets.isEmpty else { return }
            lines.append("  \(key):")
            for t in targets {
                lines.append("    - " + flow(
                    ["space: \(quote(t.space))"] + (t.mapping.map { ["mapping: \(quote($0))"] } ?? []) + ["rate: \(t.rate)"]
                        + (t.pages.map { ["pages: \($0)"] } ?? [])))
            }
        }
        func devices(_ key: String, _ targets: [PressureSpec.DeviceTarget]) {
            guard !targets.isEmpty else { return }
            lines.append("  \(key):")
            for t in targets {
                lines.append("    - " + flow([
                    "plugin: \(quote(t.plugin))", "space: \(quote(t.space))", "mapping: \(quote(t.mapping))", "rate: \(t.rate)", "pages: \(t.pages)",
                ] + (t.pinned ? ["pinned: true"] : [])))
            }
        }
        rated("churn", p.churn)
        rated("mprotect", p.mprotect)
        rated("uffd-snapshot", p.userfaultSnapshot)
        rated("mremap", p.mremap)
        rated("fork", p.forkRate)
        if let kill = p.oomKill { lines.append("  oom-kill: " + flow(["space: \(quote(kill.space))", "after-ms: \(kill.afterMilliseconds)"])) }
        devices("device-migration", p.deviceMigration)
        devices("attach-churn", p.attachChurn)
        rated("writeback", p.writeback)
        func windows(_ key: String, _ targets: [PressureSpec.WindowTarget]) {
            guard !targets.isEmpty else { return }
            lines.append("  \(key):")
            for t in targets {
                lines.append("    - " + flow(["space: \(quote(t.space))", "mapping: \(quote(t.mapping))", "rate: \(t.rate)", "pages: \(t.pages)"]))
            }
        }
        windows("lazy-free", p.lazyFree)
        if !p.exitRelease.isEmpty {
            lines.append("  exit-release:")
            for e in p.exitRelease { lines.append("    - " + flow(["plugin: \(quote(e.plugin))", "rate: \(e.rate)", "pages: \(e.pages)"])) }
        }
        return lines
    }

    private static func flow(_ fields: [String]) -> String { "{ " + fields.joined(separator: ", ") + " }" }

    /// A number as it reads back exactly (Swift prints the shortest such).
    private static func number(_ value: Double) -> String {
        value == value.rounded() && abs(value) < 1e15 ? "\(Int(value))" : "\(value)"
    }

    /// A double-quoted YAML string.
    static func quote(_ text: String) -> String {
        var out = "\""
        for scalar in text.unicodeScalars {
            switch scalar {
            case "\"": out += "\\\""
            case "\\": out += "\\\\"
            case "\n": out += "\\n"
            case "\t": out += "\\t"
            case let c where c.value < 0x20 || c.value == 0x7F: out += "\\x" + (c.value < 16 ? "0" : "") + String(c.value, radix: 16)
            default: out.unicodeScalars.append(scalar)
            }
        }
        return out + "\""
    }
}
