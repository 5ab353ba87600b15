import Foundation

/// A run's result as JSON (`mmulab run --json FILE`): the verdict and the
/// command that replays the run, the access counts, the findings as bugs
/// (`bugs`: title, key, count, when first seen, the first occurrence with
/// its evidence, examples, the symptoms attached), the totals per
/// invariant, what each actor got done, the scenario as it ran, the
/// primary's counters and each plugin's. `findings` (the first occurrence
/// of each bug) and `findings_total` keep their meaning for older readers.
public enum JSONReport {
    public static func render(_ result: RunResult) -> String {
        var out = "{\n"
        out += "  \"scenario\": \(quote(result.scenario)),\n"
        out += "  \"seed\": \(result.seed),\n"
        out += "  \"elapsed_seconds\": \(result.elapsedSeconds),\n"
        out += "  \"verdict\": \(quote(result.verdict.rawValue)),\n"
        out += "  \"clean\": \(result.isClean),\n"
        out += "  \"interrupted\": \(result.interrupted),\n"
        out += "  \"trail_digest\": \(quote(digest(result.trailDigest))),\n"
        if let schedule = result.schedule { out += "  \"schedule\": \(scheduleObject(schedule)),\n" }
        out += "  \"replay\": { \"command\": \(quote(result.replay.commandLine)), \"arguments\": "
            + array(result.replay.arguments.map(quote)) + " },\n"
        out += "  \"accesses\": { \"cpu_reads\": \(result.cpuReads), \"cpu_writes\": \(result.cpuWrites), "
            + "\"device_reads\": \(result.deviceReads), \"device_writes\": \(result.deviceWrites), "
            + "\"checked_reads\": \(result.checkedReads), \"failed_cleanly\": \(result.failedAccesses) },\n"
        out += "  \"findings_total\": \(result.findingsTotal),\n"
        out += "  \"findings_by_invariant\": { "
            + result.findingsByInvariant.map { "\(quote($0.invariant.rawValue)): \($0.count)" }.joined(separator: ", ") + " },\n"
        out += "  \"bugs\": [\n" + result.bugs.map(bug).joined(separator: ",\n") + (result.bugs.isEmpty ? "  ],\n" : "\n  ],\n")
        out += "  \"findings\": [\n"
        out += result.findings.map { "    " + finding($0) }.joined(separator: ",\n")
        out += result.findings.isEmpty ? "  ],\n" : "\n  ],\n"
        out += "  \"actors\": [\n" + result.actors.map {
            "    { \"name\": \(quote($0.name)), \"role\": \(quote($0.role.rawValue)), \"successes\": \($0.successes), \"steps\": \($0.steps), "
                + "\"idle\": \($0.isIdle) }"
        }.joined(separator: ",\n") + (result.actors.isEmpty ? "  ],\n" : "\n  ],\n")
        out += "  \"warnings\": " + array(result.warnings.map(quote)) + ",\n"
        out += "  \"notes\": " + array(result.notes.map(quote)) + ",\n"
        if let memory = result.memory {
            out += "  \"memory\": { \"frames\": \(memory.frames), \"nodes\": \(memory.nodes), \"min_free_per_node\": \(memory.minFree), "
                + "\"low_free_per_node\": \(memory.lowFree), \"high_free_per_node\": \(memory.highFree) },\n"
        }
        out += "  \"scenario_yaml\": \(quote(result.scenarioYAML)),\n"
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

    private static func array(_ items: [String]) -> String { "[" + items.joined(separator: ", ") + "]" }

    private static func optional(_ text: String?) -> String { text.map(quote) ?? "null" }

    private static func bug(_ bug: Bug) -> String {
        var out = "    { \"title\": \(quote(bug.title)), \"invariant\": \(quote(bug.key.invariant.rawValue)), \"kind\": \(optional(bug.key.kind)), "
        out += "\"plugin_instance\": \(optional(bug.key.instance)), \"path\": \(quote(bug.key.path)), \"event\": \(optional(bug.key.event)),\n"
        out += "      \"count\": \(bug.count), \"first_seen_seconds\": \(number(bug.firstSeenSeconds)), \"symptoms\": { "
            + bug.symptoms.map { "\(quote($0.invariant.rawValue)): \($0.count)" }.joined(separator: ", ") + " },\n"
        out += "      \"first\": \(finding(bug.first)),\n"
        out += "      \"examples\": " + array(bug.examples.map(finding)) + ",\n"
        out += "      \"symptom_examples\": " + array(bug.symptomExamples.map(finding)) + " }"
        return out
    }

    private static func number(_ value: Double) -> String { value.isFinite ? "\(value)" : "null" }

    private static func finding(_ finding: Finding) -> String {
        var out = "{ \"invariant\": \(quote(finding.invariant.rawValue)), \"detail\": \(quote(finding.detail))"
        if let seconds = finding.seconds { out += ", \"seconds\": \(number(seconds))" }
        if let actor = finding.actor { out += ", \"actor\": \(quote(actor))" }
        if let translation = finding.deviceTranslation { out += ", \"device_translation\": \(quote(translation))" }
        if let place = finding.place {
            out += ", \"place\": { \"space\": \(quote(place.space)), \"mapping\": \(quote(place.mapping)), \"page\": \(place.page), "
                + "\"address\": \(quote("0x" + String(place.address, radix: 16))), \"frame\": \(quote(place.frame)) }"
        }
        if !finding.trail.isEmpty { out += ", \"trail\": [" + finding.trail.map(quote).joined(separator: ", ") + "]" }
        if let step = finding.step { out += ", \"step\": \(step)" }
        if let step = finding.accessStep { out += ", \"access_step\": \(step)" }
        return out + " }"
    }

    /// A deterministic run's schedule: the strategy, its size and digests,
    /// what escaped it, and the deadlock that ended it, if any.
    private static func scheduleObject(_ s: ScheduleSummary) -> String {
        var out = "{ \"strategy\": \(quote(s.strategy)), \"steps\": \(s.steps), \"switches\": \(s.switches), \"threads\": \(s.threads), "
        out += "\"schedule_digest\": \(quote(digest(s.scheduleDigest))), \"virtual_seconds\": \(s.virtualSeconds), "
        out += "\"wall_seconds\": \(s.wallSeconds), \"decisions\": \(s.decisions), \"escapes\": [" + s.escapes.map(quote).joined(separator: ", ") + "], "
        out += "\"thread_names\": [" + s.threadNames.map(quote).joined(separator: ", ") + "]"
        if let listed = s.choicesListed {
            out += ", \"choices\": { \"listed\": \(listed), \"followed\": \(s.choicesFollowed), \"skipped\": \(s.choicesSkipped), "
                + "\"through\": \(s.choicesThrough ?? 0) }"
        }
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
