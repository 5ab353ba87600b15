import Foundation

/// A run's result as one self-contained HTML page, for a reviewer: the
/// verdict, the findings per invariant and the command that replays the
/// run at the top; the bugs (each with its count, when first seen, its
/// first occurrence in full and a few more, its symptoms); warnings about
/// actors that did nothing; the accesses and what each actor got done;
/// free frames against the watermarks and the machine's total;
/// invalidations per event on a log scale with their totals; callback
/// latencies; the scenario as it ran; the counters.
///
/// The page loads nothing: its CSS and its charts (SVG) are inline, and it
/// has no scripts, fonts, images or links. Every string taken from the run
/// is HTML-escaped. Counts have thousands separators.
public enum HTMLReport {
    /// The page. Every number it draws is finite: an empty timeline, no
    /// latencies or zero elapsed time give a short note instead of a chart
    /// or a rate.
    public static func render(_ result: RunResult) -> String {
        var out = """
            <!DOCTYPE html>
            <html lang="en"><head><meta charset="utf-8">
            <title>mmulab: \(escape(result.scenario)), seed \(result.seed)</title>
            <style>\(style)</style>
            </head><body>

            """
        out += header(result)
        out += bugs(result)
        out += accesses(result)
        out += freeFrames(result)
        out += invalidations(result.timeline)
        out += latencies(result.latencies)
        out += "<h2 id=\"scenario\">Scenario as it ran</h2>\n<pre class=\"yaml\">\(escape(result.scenarioYAML))</pre>\n"
        out += counters(result)
        out += "</body></html>\n"
        return out
    }

    /// Writes the page to `destination` (a file replaced whole, or standard output).
    public static func write(_ result: RunResult, to destination: ReportDestination) throws(ReportDestination.Failure) {
        try destination.write(render(result))
    }

    // MARK: Sections

    private static func header(_ r: RunResult) -> String {
        let verdict: String
        switch r.verdict {
        case .clean: verdict = "clean"
        case .skip: verdict = "SKIP: no read checked"
        case .fail: verdict = "\(grouped(r.findingsTotal)) finding\(r.findingsTotal == 1 ? "" : "s") in \(r.bugs.count) bug\(r.bugs.count == 1 ? "" : "s")"
        }
        var out = """
            <h1>\(escape(r.scenario))</h1>
            <p>seed \(r.seed) · \(fixed(r.elapsedSeconds, 2)) s elapsed · \
            <span class="badge \(r.verdict.rawValue)">\(escape(verdict))</span>\(r.interrupted ? " · <strong>interrupted</strong> before its length" : "")</p>
            <p>Replay: <code class="replay">\(escape(r.replay.commandLine))</code></p>

            """
        let totals = r.findingsByInvariant
        if !totals.isEmpty {
            out += "<table id=\"invariants\"><thead><tr><th>invariant</th><th class=\"n\">findings</th></tr></thead><tbody>\n"
            for total in totals {
                out += "<tr\(total.count > 0 ? " class=\"broken\"" : "")><td>\(escape(total.invariant.rawValue))</td><td class=\"n\">\(grouped(total.count))</td></tr>\n"
            }
            out += "</tbody></table>\n"
        }
        if !r.warnings.isEmpty || !r.notes.isEmpty {
            out += "<ul class=\"warnings\">\n" + r.warnings.map { "<li><strong>warning:</strong> \(escape($0))</li>\n" }.joined()
                + r.notes.map { "<li>\(escape($0))</li>\n" }.joined() + "</ul>\n"
        }
        return out
    }

    private static func accesses(_ r: RunResult) -> String {
        let rate = r.elapsedSeconds > 0 && r.elapsedSeconds.isFinite
            ? fixed(Double(r.operations) / r.elapsedSeconds / 1e6, 3) + " M/s" : "– (no elapsed time)"
        let rows: [[String]] = [
            ["CPU reads", grouped(r.cpuReads)], ["CPU writes", grouped(r.cpuWrites)],
            ["device reads", grouped(r.deviceReads)], ["device writes", grouped(r.deviceWrites)],
            ["checked reads", grouped(r.checkedReads)], ["failed cleanly", grouped(r.failedAccesses)],
            ["operations", grouped(r.operations)], ["throughput", rate],
        ]
        var out = "<h2>Accesses</h2>\n" + table(["", "count"], rows, numericFrom: 1)
        if !r.actors.isEmpty {
            out += "<h3>Actors</h3>\n" + table(
                ["actor", "role", "succeeded", "steps"],
                r.actors.map { [$0.name + ($0.isIdle ? " (idle)" : ""), $0.role.rawValue, grouped($0.successes), grouped($0.steps)] }, numericFrom: 2)
        }
        return out
    }

    /// Free frames over time, with the machine's total and the watermarks
    /// summed over its nodes (reclaim wakes below low, works up to high;
    /// below min only reclaim may allocate).
    private static func freeFrames(_ r: RunResult) -> String {
        var references: [Reference] = []
        if let memory = r.memory {
            let nodes = memory.nodes == 1 ? "" : " (\(memory.nodes) nodes)"
            references = [
                Reference(label: "all \(grouped(memory.frames)) frames", y: Double(memory.frames)),
                Reference(label: "high watermark \(grouped(memory.highFree * memory.nodes))\(nodes)", y: Double(memory.highFree * memory.nodes)),
                Reference(label: "low watermark \(grouped(memory.lowFree * memory.nodes))", y: Double(memory.lowFree * memory.nodes)),
                Reference(label: "min watermark \(grouped(memory.minFree * memory.nodes))", y: Double(memory.minFree * memory.nodes)),
            ]
        }
        return "<h2>Free frames</h2>\n" + lineChart(
            title: "Free frames over time", xLabel: "seconds", yLabel: "free frames",
            series: [("free frames", r.timeline.map { (x: $0.seconds, y: Double($0.freeFrames)) })],
            legend: false, empty: "No samples: the run recorded no timeline.", references: references)
    }

    /// Invalidation starts per second, per event, between consecutive
    /// samples (the samples' counts are cumulative), on a log scale so a
    /// rare event shows beside vmscan; each event's total in the legend
    /// and in a table.
    private static func invalidations(_ timeline: [TimelineSample]) -> String {
        let out = "<h2>Invalidations</h2>\n"
        if timeline.count < 2 { return out + note("No samples: rates need at least two timeline samples.") }
        let events = Set(timeline.flatMap { $0.invalidations.filter { $0.value > 0 }.map(\.key) }).sorted()
        if events.isEmpty { return out + note("No invalidations in the run.") }
        let totals = Dictionary(uniqueKeysWithValues: events.map { event in (event, timeline.map { $0.invalidations[event] ?? 0 }.max() ?? 0) })
        let intervals = zip(timeline, timeline.dropFirst()).filter { $1.seconds - $0.seconds > 0 }
        let series = events.map { event in
            (name: event, points: intervals.map { a, b in
                let change = Double(b.invalidations[event] ?? 0) - Double(a.invalidations[event] ?? 0)
                return (x: b.seconds, y: change / (b.seconds - a.seconds))
            })
        }
        return out + lineChart(
            title: "Invalidations per second, by event (log scale)", xLabel: "seconds", yLabel: "per second",
            series: series, legend: true, empty: "No samples: no two timeline samples are apart in time.", scale: .logarithmic,
            legendNotes: totals.mapValues { "(\(grouped($0)))" })
            + table(["event", "invalidations"], events.sorted { totals[$0]! > totals[$1]! }.map { [$0, grouped(totals[$0]!)] }, numericFrom: 1)
    }

    private static func latencies(_ latencies: [CallbackLatency]) -> String {
        let out = "<h2>Callback latency</h2>\n"
        if latencies.isEmpty { return out + note("No samples: no plugin callback was timed.") }
        let rows = latencies.map {
            [$0.plugin, $0.callback, grouped($0.count)] + [$0.p50, $0.p90, $0.p99, $0.p999, $0.max].map { nanoseconds(Double($0)) }
        }
        return out + table(["plugin", "callback", "count", "p50", "p90", "p99", "p99.9", "max"], rows, numericFrom: 2)
            + barChart(title: "p99 by plugin and callback (log scale)", bars: latencies.map { ("\($0.plugin) \($0.callback)", $0.p99) })
    }

    private static func counters(_ r: RunResult) -> String {
        var out = "<h2>Primary counters</h2>\n"
        let primary = r.machineStatistics.filter { $0.1 != 0 }
        out += primary.isEmpty ? note("All zero.") : table(["counter", "value"], primary.map { [$0.0, grouped($0.1)] }, numericFrom: 1)
        out += "<h2>Plugin counters</h2>\n"
        if r.pluginStatistics.isEmpty { return out + note("No plugins.") }
        for (plugin, statistics) in r.pluginStatistics {
            out += "<h3>\(escape(plugin))</h3>\n"
            out += statistics.isEmpty
                ? note("No counters.") : table(["counter", "value"], statistics.map { [$0.name, grouped(Int(clamping: $0.value))] }, numericFrom: 1)
        }
        return out
    }

    // MARK: Text

    /// A nanosecond count with a unit that keeps it short: `850 ns`,
    /// `12.3 µs`, `4.56 ms`, `1.20 s`.
    static func nanoseconds(_ ns: Double) -> String {
        if ns < 999.5 { return fixed(ns, 0) + " ns" }
        for (unit, scale) in [("µs", 1e3), ("ms", 1e6)] where ns / scale < 999.5 {
            return significant(ns / scale) + " " + unit
        }
        return significant(ns / 1e9) + " s"
    }

    private static func significant(_ value: Double) -> String {
        fixed(value, value < 9.995 ? 2 : value < 99.95 ? 1 : 0)
    }

    /// `value` with `digits` decimals; a dash if it is not finite.
    static func fixed(_ value: Double, _ digits: Int) -> String {
        value.isFinite ? String(format: "%.\(digits)f", value) : "–"
    }

    /// `1234567` as `1,234,567`.
    static func grouped(_ value: Int) -> String {
        let digits = String(value.magnitude)
        var out = value < 0 ? "-" : ""
        for (index, digit) in digits.enumerated() {
            if index > 0, (digits.count - index) % 3 == 0 { out += "," }
            out.append(digit)
        }
        return out
    }

    /// An SVG coordinate: one decimal, and 0 for anything not finite.
    static func coordinate(_ value: Double) -> String {
        value.isFinite ? String(format: "%.1f", value) : "0"
    }

    static func note(_ text: String) -> String { "<p class=\"note\">\(escape(text))</p>\n" }

    /// A table; every cell is escaped, columns from `numericFrom` align right.
    static func table(_ head: [String], _ rows: [[String]], numericFrom: Int) -> String {
        func cells(_ row: [String], _ tag: String) -> String {
            row.enumerated().map { "<\(tag)\($0.offset >= numericFrom ? " class=\"n\"" : "")>\(escape($0.element))</\(tag)>" }.joined()
        }
        return "<table><thead><tr>\(cells(head, "th"))</tr></thead><tbody>\n"
            + rows.map { "<tr>\(cells($0, "td"))</tr>\n" }.joined() + "</tbody></table>\n"
    }

    /// `text` with & < > " ' as character references: safe in element
    /// content and in quoted attribute values.
    static func escape(_ text: String) -> String {
        var out = ""
        out.reserveCapacity(text.utf8.count)
        for scalar in text.unicodeScalars {
            switch scalar {
            case "&": out += "&amp;"
            case "<": out += "&lt;"
            case ">": out += "&gt;"
            case "\"": out += "&quot;"
            case "'": out += "&#39;"
            default: out.unicodeScalars.append(scalar)
            }
        }
        return out
    }

    private static let style = """
        body{font:14px/1.45 system-ui,sans-serif;color:#222;max-width:1040px;margin:24px auto;padding:0 16px}
        h1{margin:0 0 6px}h2{margin-top:28px;border-bottom:1px solid #ddd;padding-bottom:3px}h3{margin:14px 0 4px;font-size:15px}
        table{border-collapse:collapse;margin:6px 0}th,td{padding:3px 10px;border-bottom:1px solid #eee;text-align:left}
        th{background:#f6f6f6}.n{text-align:right;font-variant-numeric:tabular-nums}tr.broken td{color:#c62828;font-weight:600}
        code{font-family:ui-monospace,monospace;background:#f3f3f3;padding:1px 4px;border-radius:3px}
        pre.yaml{background:#f6f6f6;padding:8px 12px;overflow-x:auto;font-size:12px}
        .badge{padding:2px 10px;border-radius:10px;color:#fff;font-weight:600}.clean{background:#2e7d32}.fail{background:#c62828}
        .skip{background:#8d6e00}.warnings li{color:#8d4e00}
        .note{color:#666;font-style:italic}.bugs>li{margin:14px 0}.bug-title{font-weight:600;color:#c62828;font-size:15px}
        .count{color:#444;margin:2px 0}.detail{white-space:pre-wrap}.place{margin:4px 0;color:#444}.trail{margin:2px 0;font-size:13px}
        details{margin:4px 0}summary{cursor:pointer;color:#444}
        svg{display:block;max-width:100%;height:auto;margin:8px 0}svg text{font:11px system-ui,sans-serif;fill:#333}
        svg .title{font-size:13px;font-weight:600}svg .grid{stroke:#e6e6e6}svg .axis{stroke:#888}
        svg .reference line{stroke:#999;stroke-dasharray:4 3}svg .reference text{fill:#666}
        """
}

extension CallbackLatency {
    /// A latency as every report prints it: `850 ns`, `12.3 µs`, `4.56 ms`.
    public static func text(nanoseconds: UInt64) -> String { HTMLReport.nanoseconds(Double(nanoseconds)) }
}
