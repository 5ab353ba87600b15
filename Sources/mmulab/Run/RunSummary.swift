import ReclaimLab

/// The table printed at the end of a run: accesses, what each actor got
/// done, what the primary and each plugin did, the slowest callbacks, the
/// verdict with the findings per invariant, every bug (the first few with
/// their evidence), and the command that replays the run.
struct RunSummary {
    let result: RunResult
    /// Bugs shown with their first occurrence in full; the rest by title.
    static let detailed = 5
    static let listed = 30

    var text: String {
        let r = result
        var lines: [String] = []
        let rate = r.elapsedSeconds > 0 ? Double(r.operations) / r.elapsedSeconds : 0
        lines.append("scenario  \(r.scenario), seed \(r.seed), \(fixed(r.elapsedSeconds)) s"
            + (r.interrupted ? " (INTERRUPTED: stopped early; what ran was checked)" : ""))
        lines.append("accesses  CPU reads \(grouped(r.cpuReads)), CPU writes \(grouped(r.cpuWrites)), device reads \(grouped(r.deviceReads)), "
            + "device writes \(grouped(r.deviceWrites))")
        lines.append("          \(grouped(r.operations)) in all (\(fixed(rate / 1_000_000, digits: 2)) M/s), \(grouped(r.checkedReads)) reads checked, "
            + "\(grouped(r.failedAccesses)) failed cleanly")
        if !r.actors.isEmpty {
            let width = min(40, r.actors.map(\.name.count).max() ?? 0)
            for (index, actor) in r.actors.enumerated() {
                lines.append((index == 0 ? "actors    " : "          ") + actor.name.padded(to: width) + "  "
                    + "\(grouped(actor.successes)) of \(grouped(actor.steps)) \(actor.role == .workload ? "accesses" : "steps") succeeded")
            }
        }
        if let last = r.timeline.last, !last.invalidations.isEmpty {
            let events = last.invalidations.sorted { $0.value > $1.value }.map { "\($0.key) \(grouped($0.value))" }
            lines.append("invalid.  " + events.joined(separator: ", "))
        }
        let interesting = r.machineStatistics.filter { $0.1 > 0 }.map { "\($0.0) \(grouped($0.1))" }
        lines.append("primary   " + interesting.joined(separator: ", "))
        for (name, stats) in r.pluginStatistics {
            let counters = stats.filter { $0.value > 0 }.map { "\($0.name) \(grouped(Int(clamping: $0.value)))" }
            lines.append("\(name.padded(to: 9)) " + (counters.isEmpty ? "(no counter moved)" : counters.joined(separator: ", ")))
        }
        let starts = r.latencies.filter { $0.callback == "invalidate_range_start" || $0.callback == "interval invalidate" }
        if !starts.isEmpty {
            lines.append("latency   invalidation callbacks, p50 / p99 / max:")
            for latency in starts {
                lines.append("          \(latency.plugin.padded(to: 18)) \(latency.callback.padded(to: 23)) "
                    + [latency.p50, latency.p99, latency.max].map(CallbackLatency.text).joined(separator: " / ")
                    + "  (\(grouped(latency.count)) calls)")
            }
        }
        for warning in r.warnings { lines.append("WARNING   \(warning)") }
        for note in r.notes { lines.append("note      \(note)") }
        if let schedule = r.schedule { lines += Self.scheduleLines(schedule, trailDigest: r.trailDigest) }
        lines += verdict
        lines.append("replay    \(r.replay.commandLine)")
        return lines.joined(separator: "\n")
    }

    /// The verdict, the totals per invariant, and the bugs.
    private var verdict: [String] {
        let r = result
        switch r.verdict {
        case .skip:
            return [r.interrupted
                ? "result    SKIP: interrupted before any read was checked; nothing is proven"
                : "result    SKIP: no read was checked, so the run proves nothing (exit status 0)"]
        case .clean:
            return [r.interrupted
                ? "result    interrupted; no invariant broken in what ran (\(grouped(r.checkedReads)) reads checked)"
                : "result    clean: no invariant broken (\(grouped(r.checkedReads)) reads checked)"]
        case .fail:
            break
        }
        var lines = ["result    FAIL: \(grouped(r.findingsTotal)) finding\(r.findingsTotal == 1 ? "" : "s") in \(r.bugs.count) bug\(r.bugs.count == 1 ? "" : "s")"]
        let totals = r.findingsByInvariant.filter { $0.count > 0 }.map { "\($0.invariant.rawValue) \(grouped($0.count))" }
        lines.append("          by invariant: " + totals.joined(separator: ", "))
        for (index, bug) in r.bugs.prefix(Self.listed).enumerated() {
            lines.append("  #\(index + 1) \(bug.title)")
            var counted = "     \(grouped(bug.count)) time\(bug.count == 1 ? "" : "s"), first at \(fixed(bug.firstSeenSeconds, digits: 3)) s"
                + (bug.first.step.map { " [step \($0)]" } ?? "")
            if !bug.symptoms.isEmpty {
                counted += "; symptoms of the same accesses: " + bug.symptoms.map { "\($0.invariant.rawValue) \(grouped($0.count))" }.joined(separator: ", ")
            }
            lines.append(counted)
            guard index < Self.detailed else { continue }
            let first = bug.first
            lines.append("     \(first.detail)")
            if let place = first.place {
                lines.append("     page \(place.page) of \(place.space)/\(place.mapping) at 0x\(String(place.address, radix: 16)); the primary maps \(place.frame) now"
                    + (first.deviceTranslation.map { "; the device used \($0)" } ?? ""))
            } else if let translation = first.deviceTranslation {
                lines.append("     the device used \(translation)")
            }
            for event in first.trail { lines.append("       \(event)") }
        }
        if r.bugs.count > Self.listed { lines.append("  ... \(r.bugs.count - Self.listed) more bugs (--json or --report for all)") }
        return lines
    }
}

extension RunSummary {
    /// How a deterministic run was scheduled, its digests, and what broke its reproducibility.
    static func scheduleLines(_ s: ScheduleSummary, trailDigest: UInt64) -> [String] {
        var lines = [
            "schedule  \(s.strategy), deterministic: \(grouped(Int(clamping: s.steps))) steps, \(grouped(Int(clamping: s.switches))) switches, "
                + "\(s.threads) threads, \(fixed(s.virtualSeconds)) s virtual in \(fixed(s.wallSeconds)) s",
            "          trail digest \(hexDigest(trailDigest)), schedule digest \(hexDigest(s.scheduleDigest))",
        ]
        if let listed = s.choicesListed {
            lines.append("          followed \(grouped(s.choicesFollowed)) of \(grouped(listed)) listed choices up to step \(grouped(Int(clamping: s.choicesThrough ?? 0)))"
                + (s.choicesSkipped > 0 ? " (\(grouped(s.choicesSkipped)) skipped: their thread could not run then)" : "")
                + ", then \(s.strategy)")
        }
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

/// `1234567` as `1,234,567`.
func grouped(_ value: Int) -> String {
    let digits = String(value.magnitude)
    var out = ""
    for (index, digit) in digits.enumerated() {
        if index > 0, (digits.count - index) % 3 == 0 { out += "," }
        out.append(digit)
    }
    return (value < 0 ? "-" : "") + out
}
