import Foundation

/// A run's result as JSON (`mmulab run --json FILE`): the scenario and
/// seed to replay it, the access counts, every finding with its invariant,
/// the primary's counters and each plugin's.
public enum JSONReport {
    public static func render(_ result: RunResult) -> String {
        var out = "{\n"
        out += "  \"scenario\": \(quote(result.scenario)),\n"
        out += "  \"seed\": \(result.seed),\n"
        out += "  \"elapsed_seconds\": \(result.elapsedSeconds),\n"
        out += "  \"clean\": \(result.isClean),\n"
        out += "  \"interrupted\": \(result.interrupted),\n"
        out += "  \"trail_digest\": \(quote(digest(result.trailDigest))),\n"
        if let schedule = result.schedule { out += "  \"schedule\": \(scheduleObject(schedule)),\n" }
        if !result.replayArguments.isEmpty {
            out += "  \"replay_arguments\": [" + result.replayArguments.map(quote).joined(separator: ", ") + "],\n"
        }
        out += "  \"accesses\": { \"cpu_reads\": \(result.cpuReads), \"cpu_writes\": \(result.cpuWrites), "
            + "\"device_reads\": \(result.deviceReads), \"device_writes\": \(result.deviceWrites), "
            + "\"checked_reads\": \(result.checkedReads), \"failed_cleanly\": \(result.failedAccesses) },\n"
        out += "  \"findings_total\": \(result.findingsTotal),\n"
        out += "  \"findings\": [\n"
        out += result.findings.map(finding).joined(separator: ",\n")
        out += result.findings.isEmpty ? "  ],\n" : "\n  ],\n"
        out += "  \"primary\": { " + result.machineStatistics.map { "\(quote($0.0)): \($0.1)" }.joined(separator: ", ") + " },\n"
        out += "  \"plugins\": {\n"
        out += result.pluginStatistics.map { name, stats in
            "    \(quote(name)): { " + stats.map { "\(quote($0.name)): \($0.value)" }.joined(separator: ", ") + " }"
        }.joined(separator: ",\n")
        out += result.pluginStatistics.isEmpty ? "  },\n" : "\n  },\n"
        out += "  \"callback_latency_ns\": [\n"
        out += result.latencies.map {
            "    { \"plugin\": \(quote($0.plugin)), \"callback\": \(quote($0.callback)), \"count\": \($0.count), "
                + "\"p50\": \($0.p50), \"p90\": \($0.p90), \"p99\": \($0.p99), \"p99_9\": \($0.p999), \"max\": \($0.max) }"
        }.joined(separator: ",\n")
        out += result.latencies.isEmpty ? "  ],\n" : "\n  ],\n"
        out += "  \"timeline\": [\n"
        out += result.timeline.map { sample in
            "    { \"seconds\": \(sample.seconds), \"free_frames\": \(sample.freeFrames), \"accesses\": \(sample.operations), \"invalidations\": { "
                + sample.invalidations.sorted { $0.key < $1.key }.map { "\(quote($0.key)): \($0.value)" }.joined(separator: ", ") + " } }"
        }.joined(separator: ",\n")
        out += result.timeline.isEmpty ? "  ]\n" : "\n  ]\n"
        out += "}\n"
        return out
    }

    private static func finding(_ finding: Finding) -> String {
        var out = "    { \"invariant\": \(quote(finding.invariant.rawValue)), \"detail\": \(quote(finding.detail))"
        if let place = finding.place {
            out += ", \"place\": { \"space\": \(quote(place.space)), \"mapping\": \(quote(place.mapping)), \"page\": \(place.page), "
                + "\"address\": \(quote("0x" + String(place.address, radix: 16))), \"frame\": \(quote(place.frame)) }"
        }
        if !finding.trail.isEmpty { out += ", \"trail\": [" + finding.trail.map(quote).joined(separator: ", ") + "]" }
        if let step = finding.step { out += ", \"step\": \(step)" }
        return out + " }"
    }

    /// A deterministic run's schedule: the strategy, its size and digests,
    /// what escaped it, and the deadlock that ended it, if any.
    private static func scheduleObject(_ s: ScheduleSummary) -> String {
        var out = "{ \"strategy\": \(quote(s.strategy)), \"steps\": \(s.steps), \"switches\": \(s.switches), \"threads\": \(s.threads), "
        out += "\"schedule_digest\": \(quote(digest(s.scheduleDigest))), \"virtual_seconds\": \(s.virtualSeconds), "
        out += "\"wall_seconds\": \(s.wallSeconds), \"escapes\": [" + s.escapes.map(quote).joined(separator: ", ") + "]"
        if let deadlock = s.deadlock { out += ", \"deadlock\": \(quote(deadlock))" }
        return out + " }"
    }

    /// A digest as a JSON string of 16 hex digits (a 64-bit number does not survive every JSON reader).
    static func digest(_ value: UInt64) -> String {
        let digits = String(value, radix: 16)
        return "0x" + String(repeating: "0", count: 16 - digits.count) + digits
    }

    /// Writes the report to `destination` (a file replaced whole, or standard output).
    public static func write(_ result: RunResult, to destination: ReportDestination) throws(ReportDestination.Failure) {
        try destination.write(render(result))
    }

    static func quote(_ text: String) -> String {
        var out = "\""
        for scalar in text.unicodeScalars {
            switch scalar {
            case "\"": out += "\\\""
            case "\\": out += "\\\\"
            case "\n": out += "\\n"
            case "\r": out += "\\r"
            case "\t": out += "\\t"
            case let c where c.value < 0x20: out += String(format: "\\u%04x", c.value)
            default: out.unicodeScalars.append(scalar)
            }
        }
        return out + "\""
    }
}
