import ReclaimLab

/// The table printed at the end of a run: accesses, what the primary and
/// each plugin did, the slowest callbacks, and every finding with its
/// page, frame, event trail and the command that replays it.
struct RunSummary {
    let result: RunResult
    let replay: String

    var text: String {
        let r = result
        var lines: [String] = []
        let rate = r.elapsedSeconds > 0 ? Double(r.operations) / r.elapsedSeconds : 0
        lines.append("scenario  \(r.scenario), seed \(r.seed), \(fixed(r.elapsedSeconds)) s"
            + (r.interrupted ? " (INTERRUPTED: stopped early; what ran was checked)" : ""))
        lines.append("accesses  CPU reads \(r.cpuReads), CPU writes \(r.cpuWrites), device reads \(r.deviceReads), device writes \(r.deviceWrites)")
        lines.append("          \(r.operations) in all (\(fixed(rate / 1_000_000, digits: 2)) M/s), \(r.checkedReads) reads checked, \(r.failedAccesses) failed cleanly")
        if let last = r.timeline.last, !last.invalidations.isEmpty {
            let events = last.invalidations.sorted { $0.value > $1.value }.map { "\($0.key) \($0.value)" }
            lines.append("invalid.  " + events.joined(separator: ", "))
        }
        let interesting = r.machineStatistics.filter { $0.1 > 0 }.map { "\($0.0) \($0.1)" }
        lines.append("primary   " + interesting.joined(separator: ", "))
        for (name, stats) in r.pluginStatistics {
            lines.append("\(name.padded(to: 9)) " + stats.filter { $0.value > 0 }.map { "\($0.name) \($0.value)" }.joined(separator: ", "))
        }
        let starts = r.latencies.filter { $0.callback == "invalidate_range_start" || $0.callback == "interval invalidate" }
        if !starts.isEmpty {
            lines.append("latency   invalidation callbacks, p50 / p99 / max:")
            for latency in starts {
                lines.append("          \(latency.plugin.padded(to: 18)) \(latency.callback.padded(to: 23)) "
                    + [latency.p50, latency.p99, latency.max].map(CallbackLatency.text).joined(separator: " / ") + "  (\(latency.count) calls)")
            }
        }
        if let schedule = r.schedule { lines += Self.scheduleLines(schedule, trailDigest: r.trailDigest) }
        if r.isClean {
            lines.append(r.interrupted ? "result    interrupted; no invariant broken in what ran" : "result    clean: no invariant broken")
            return lines.joined(separator: "\n")
        }
        lines.append("result    \(r.findingsTotal) findings; rerun with its seed: \(replay)")
        var byInvariant: [String: Int] = [:]
        for finding in r.findings { byInvariant[finding.invariant.rawValue, default: 0] += 1 }
        lines.append("          kept by invariant: " + byInvariant.sorted { $0.key < $1.key }.map { "\($0.key) \($0.value)" }.joined(separator: ", "))
        for finding in r.findings.prefix(10) {
            lines.append("  - \(finding)" + (finding.step.map { " [step \($0)]" } ?? ""))
            if let place = finding.place {
                lines.append("    page \(place.page) of \(place.space)/\(place.mapping) at 0x\(String(place.address, radix: 16)); \(place.frame)")
            }
            for event in finding.trail { lines.append("      \(event)") }
        }
        if r.findings.count > 10 { lines.append("  ... \(r.findings.count - 10) more kept (--json or --report for all)") }
        return lines.joined(separator: "\n")
    }

    /// How a deterministic run was scheduled, its digests, and what broke its reproducibility.
    static func scheduleLines(_ s: ScheduleSummary, trailDigest: UInt64) -> [String] {
        var lines = [
            "schedule  \(s.strategy), deterministic: \(s.steps) steps, \(s.switches) switches, \(s.threads) threads, "
                + "\(fixed(s.virtualSeconds)) s virtual in \(fixed(s.wallSeconds)) s",
            "          trail digest \(hexDigest(trailDigest)), schedule digest \(hexDigest(s.scheduleDigest))",
        ]
        for escape in s.escapes { lines.append("          NOT REPRODUCIBLE: \(escape)") }
        if let deadlock = s.deadlock { lines += deadlock.split(separator: "\n").map { "          \($0)" } }
        return lines
    }
}

/// A 64-bit digest as 16 hex digits.
func hexDigest(_ value: UInt64) -> String {
    let digits = String(value, radix: 16)
    return "0x" + String(repeating: "0", count: 16 - digits.count) + digits
}
