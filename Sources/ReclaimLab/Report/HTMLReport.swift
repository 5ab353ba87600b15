import Foundation

/// A run's result as one self-contained HTML page, for a reviewer: the
/// verdict and the command that replays the run, the access counts, the
/// findings with their page and event trail, free frames and invalidation
/// rates over time, callback latencies, and the counters.
///
/// The page loads nothing: its CSS and its charts (SVG) are inline, and it
/// has no scripts, fonts, images or links. Every string taken from the run
/// is HTML-escaped.
public enum HTMLReport {
    /// How many findings the page shows in full; the rest are counted.
    static let findingsShown = 50

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
        out += accesses(result)
        out += findings(result)
        out += "<h2>Free frames</h2>\n"
        out += lineChart(
            title: "Free frames over time", xLabel: "seconds", yLabel: "free frames",
            series: [("free frames", result.timeline.map { (x: $0.seconds, y: Double($0.freeFrames)) })],
            legend: false, empty: "No samples: the run recorded no timeline.")
        out += invalidations(result.timeline)
        out += latencies(result.latencies)
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
        let total = max(r.findingsTotal, r.findings.count)
        let verdict = r.isClean ? "clean" : "\(total) finding\(total == 1 ? "" : "s")"
        return """
            <h1>\(escape(r.scenario))</h1>
            <p>seed \(r.seed) · \(fixed(r.elapsedSeconds, 2)) s elapsed · \
            <span class="badge \(r.isClean ? "clean" : "bad")">\(verdict)</span>\(r.interrupted ? " · <strong>interrupted</strong> before its length" : "")</p>
            <p>Replay: <code>\(escape("mmulab run \(shellWord(r.scenario)) --seed \(r.seed)"))</code></p>

            """
    }

    private static func accesses(_ r: RunResult) -> String {
        let rate = r.elapsedSeconds > 0 && r.elapsedSeconds.isFinite
            ? fixed(Double(r.operations) / r.elapsedSeconds / 1e6, 3) + " M/s" : "– (no elapsed time)"
        let rows: [[String]] = [
            ["CPU reads", "\(r.cpuReads)"], ["CPU writes", "\(r.cpuWrites)"],
            ["device reads", "\(r.deviceReads)"], ["device writes", "\(r.deviceWrites)"],
            ["checked reads", "\(r.checkedReads)"], ["failed cleanly", "\(r.failedAccesses)"],
            ["operations", "\(r.operations)"], ["throughput", rate],
        ]
        return "<h2>Accesses</h2>\n" + table(["", "count"], rows, numericFrom: 1)
    }

    private static func findings(_ r: RunResult) -> String {
        let total = max(r.findingsTotal, r.findings.count)
        var out = "<h2>Findings</h2>\n"
        if total == 0 { return out + note("None: every enabled check held.") }
        let shown = r.findings.prefix(findingsShown)
        if !shown.isEmpty { out += "<ol class=\"findings\">\n" }
        for finding in shown {
            out += "<li><span class=\"invariant\">\(escape(finding.invariant.rawValue))</span>"
            out += "<div class=\"detail\">\(escape(finding.detail))</div>\n"
            if let p = finding.place {
                out += "<p class=\"place\">space <code>\(escape(p.space))</code>, mapping <code>\(escape(p.mapping))</code>, "
                    + "page \(p.page), address <code>0x\(String(p.address, radix: 16))</code>, frame <code>\(escape(p.frame))</code></p>\n"
            }
            if !finding.trail.isEmpty {
                out += "<p class=\"place\">Last events on the page, oldest first:</p>\n<ol class=\"trail\">"
                    + finding.trail.map { "<li><code>\(escape($0))</code></li>" }.joined() + "</ol>\n"
            }
            out += "</li>\n"
        }
        if !shown.isEmpty { out += "</ol>\n" }
        let more = total - shown.count
        if more > 0 { out += note("\(more) more finding\(more == 1 ? "" : "s") not shown (\(total) in all).") }
        return out
    }

    /// Invalidation starts per second, per event, between consecutive
    /// samples (the samples' counts are cumulative).
    private static func invalidations(_ timeline: [TimelineSample]) -> String {
        let out = "<h2>Invalidations</h2>\n"
        if timeline.count < 2 { return out + note("No samples: rates need at least two timeline samples.") }
        let events = Set(timeline.flatMap { $0.invalidations.filter { $0.value > 0 }.map(\.key) }).sorted()
        if events.isEmpty { return out + note("No invalidations in the run.") }
        let intervals = zip(timeline, timeline.dropFirst()).filter { $1.seconds - $0.seconds > 0 }
        let series = events.map { event in
            (name: event, points: intervals.map { a, b in
                let change = Double(b.invalidations[event] ?? 0) - Double(a.invalidations[event] ?? 0)
                return (x: b.seconds, y: change / (b.seconds - a.seconds))
            })
        }
        return out + lineChart(
            title: "Invalidations per second, by event", xLabel: "seconds", yLabel: "per second",
            series: series, legend: true, empty: "No samples: no two timeline samples are apart in time.")
    }

    private static func latencies(_ latencies: [CallbackLatency]) -> String {
        let out = "<h2>Callback latency</h2>\n"
        if latencies.isEmpty { return out + note("No samples: no plugin callback was timed.") }
        let rows = latencies.map {
            [$0.plugin, $0.callback, "\($0.count)"] + [$0.p50, $0.p90, $0.p99, $0.p999, $0.max].map { nanoseconds(Double($0)) }
        }
        return out + table(["plugin", "callback", "count", "p50", "p90", "p99", "p99.9", "max"], rows, numericFrom: 2)
            + barChart(title: "p99 by plugin and callback (log scale)", bars: latencies.map { ("\($0.plugin) \($0.callback)", $0.p99) })
    }

    private static func counters(_ r: RunResult) -> String {
        var out = "<h2>Primary counters</h2>\n"
        let primary = r.machineStatistics.filter { $0.1 != 0 }
        out += primary.isEmpty ? note("All zero.") : table(["counter", "value"], primary.map { [$0.0, "\($0.1)"] }, numericFrom: 1)
        out += "<h2>Plugin counters</h2>\n"
        if r.pluginStatistics.isEmpty { return out + note("No plugins.") }
        for (plugin, statistics) in r.pluginStatistics {
            out += "<h3>\(escape(plugin))</h3>\n"
            out += statistics.isEmpty
                ? note("No counters.") : table(["counter", "value"], statistics.map { [$0.name, "\($0.value)"] }, numericFrom: 1)
        }
        return out
    }

    // MARK: Charts

    private static let palette = ["#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf", "#7f7f7f", "#bcbd22"]

    /// An SVG line chart, one line per series (colours from `palette`),
    /// with ticked axes, a title and, if `legend`, a legend at the right.
    /// Points that are not finite are dropped; with none left it is the
    /// `empty` note instead.
    private static func lineChart(
        title: String, xLabel: String, yLabel: String, series: [(name: String, points: [(x: Double, y: Double)])], legend: Bool,
        empty: String
    ) -> String {
        let lines = series.map { (name: $0.name, points: $0.points.filter { $0.x.isFinite && $0.y.isFinite }) }.filter { !$0.points.isEmpty }
        let all = lines.flatMap(\.points)
        guard let minX = all.map(\.x).min(), let maxX = all.map(\.x).max(), let minY = all.map(\.y).min(), let maxY = all.map(\.y).max()
        else { return note(empty) }
        let (x0, x1) = maxX > minX ? (minX, maxX) : (minX - 0.5, maxX + 0.5)
        let yStep = niceStep((max(maxY, min(0, minY) + 1) - min(0, minY)) / 5)
        let y0 = (min(0, minY) / yStep).rounded(.down) * yStep
        let y1 = max((maxY / yStep).rounded(.up) * yStep, y0 + yStep)
        let xStep = niceStep((x1 - x0) / 6)
        let (xTop, yTop) = (max(abs(x0), abs(x1)), max(abs(y0), abs(y1)))
        let (left, top, w, h) = (64.0, 32.0, 560.0, 220.0)
        let legendWidth = legend ? 40 + 7 * Double(lines.map(\.name.count).max() ?? 0) : 16
        let (width, height) = (left + w + legendWidth, max(top + h + 46, top + 18 * Double(lines.count) + 10))
        func px(_ x: Double) -> String { coordinate(left + (x - x0) / (x1 - x0) * w) }
        func py(_ y: Double) -> String { coordinate(top + h - (y - y0) / (y1 - y0) * h) }

        var svg = svgOpen(width: width, height: height, title: title)
        svg += "<text class=\"title\" x=\"\(coordinate(left))\" y=\"18\">\(escape(title))</text>\n"
        for y in ticks(y0, y1, step: yStep) {
            svg += "<line class=\"grid\" x1=\"\(px(x0))\" x2=\"\(px(x1))\" y1=\"\(py(y))\" y2=\"\(py(y))\"/>"
                + "<text x=\"\(coordinate(left - 6))\" y=\"\(py(y))\" dy=\"4\" text-anchor=\"end\">\(tick(y, step: yStep, top: yTop))</text>\n"
        }
        for x in ticks(x0, x1, step: xStep) {
            svg += "<line class=\"axis\" x1=\"\(px(x))\" x2=\"\(px(x))\" y1=\"\(py(y0))\" y2=\"\(coordinate(top + h + 4))\"/>"
                + "<text x=\"\(px(x))\" y=\"\(coordinate(top + h + 16))\" text-anchor=\"middle\">\(tick(x, step: xStep, top: xTop))</text>\n"
        }
        svg += "<line class=\"axis\" x1=\"\(px(x0))\" x2=\"\(px(x1))\" y1=\"\(py(y0))\" y2=\"\(py(y0))\"/>"
            + "<line class=\"axis\" x1=\"\(px(x0))\" x2=\"\(px(x0))\" y1=\"\(py(y0))\" y2=\"\(py(y1))\"/>\n"
        svg += "<text x=\"\(coordinate(left + w / 2))\" y=\"\(coordinate(top + h + 36))\" text-anchor=\"middle\">\(escape(xLabel))</text>"
            + "<text transform=\"translate(14 \(coordinate(top + h / 2))) rotate(-90)\" text-anchor=\"middle\">\(escape(yLabel))</text>\n"
        for (index, line) in lines.enumerated() {
            let colour = palette[index % palette.count]
            let points = line.points.map { "\(px($0.x)),\(py($0.y))" }
            svg += points.count == 1
                ? "<circle cx=\"\(px(line.points[0].x))\" cy=\"\(py(line.points[0].y))\" r=\"3\" fill=\"\(colour)\"/>\n"
                : "<polyline fill=\"none\" stroke=\"\(colour)\" stroke-width=\"1.5\" points=\"\(points.joined(separator: " "))\"/>\n"
            if legend {
                let y = top + 18 * Double(index)
                svg += "<g class=\"legend\"><rect x=\"\(coordinate(left + w + 16))\" y=\"\(coordinate(y))\" "
                    + "width=\"12\" height=\"12\" fill=\"\(colour)\"/>"
                    + "<text x=\"\(coordinate(left + w + 34))\" y=\"\(coordinate(y + 10))\">\(escape(line.name))</text></g>\n"
            }
        }
        return svg + "</svg>\n"
    }

    /// An SVG horizontal bar chart of nanosecond values on a log scale
    /// (whole decades; a value under 1 ns is drawn as 1 ns).
    private static func barChart(title: String, bars: [(label: String, value: UInt64)]) -> String {
        let values = bars.map { log10(Double(max($0.value, 1))) }
        guard let low = values.min().map({ $0.rounded(.down) }), let most = values.max() else { return "" }
        let high = max(most.rounded(.up), low + 1)
        let labelWidth = min(420, 16 + 6.5 * Double(bars.map(\.label.count).max() ?? 0))
        let (top, w, row) = (36.0, 360.0, 20.0)
        let width = labelWidth + w + 80, height = top + row * Double(bars.count) + 24
        func px(_ decade: Double) -> Double { labelWidth + (decade - low) / (high - low) * w }

        var svg = svgOpen(width: width, height: height, title: title)
        svg += "<text class=\"title\" x=\"8\" y=\"18\">\(escape(title))</text>\n"
        for decade in Int(low)...Int(high) {
            let x = coordinate(px(Double(decade)))
            svg += "<line class=\"grid\" x1=\"\(x)\" x2=\"\(x)\" y1=\"\(coordinate(top - 4))\" y2=\"\(coordinate(height - 20))\"/>"
                + "<text x=\"\(x)\" y=\"\(coordinate(height - 6))\" text-anchor=\"middle\">\(decadeLabel(decade))</text>\n"
        }
        for (index, bar) in bars.enumerated() {
            let y = top + row * Double(index)
            let length = max(2, px(values[index]) - labelWidth)
            svg += "<text x=\"\(coordinate(labelWidth - 6))\" y=\"\(coordinate(y + 12))\" text-anchor=\"end\">\(escape(bar.label))</text>"
                + "<rect x=\"\(coordinate(labelWidth))\" y=\"\(coordinate(y + 2))\" width=\"\(coordinate(length))\" height=\"13\" "
                + "fill=\"\(palette[index % palette.count])\"/>"
                + "<text x=\"\(coordinate(labelWidth + length + 4))\" y=\"\(coordinate(y + 12))\">\(nanoseconds(Double(bar.value)))</text>\n"
        }
        return svg + "</svg>\n"
    }

    private static func svgOpen(width: Double, height: Double, title: String) -> String {
        "<svg viewBox=\"0 0 \(coordinate(width)) \(coordinate(height))\" width=\"\(coordinate(width))\" "
            + "height=\"\(coordinate(height))\" role=\"img\" aria-label=\"\(escape(title))\">\n"
    }

    /// A step of 1, 2 or 5 times a power of ten, at least `raw` (1 if `raw`
    /// is not a positive finite number).
    private static func niceStep(_ raw: Double) -> Double {
        guard raw > 0, raw.isFinite else { return 1 }
        let power = pow(10, log10(raw).rounded(.down))
        let fraction = raw / power
        return (fraction <= 1 ? 1 : fraction <= 2 ? 2 : fraction <= 5 ? 5 : 10) * power
    }

    /// The multiples of `step` from `low` to `high`, at most 41 of them
    /// (none if the numbers are not usable).
    private static func ticks(_ low: Double, _ high: Double, step: Double) -> [Double] {
        let first = (low / step).rounded(.up)
        return Array((0...40).lazy.map { (first + Double($0)) * step }.prefix { $0.isFinite && $0 <= high + step * 1e-9 })
    }

    /// A tick label on an axis reaching `top`: as many decimals as `step`
    /// needs, in thousands (k) or millions (M) when the axis is that long.
    private static func tick(_ value: Double, step: Double, top: Double) -> String {
        if abs(value) < step * 1e-9 { return "0" }
        let (scale, suffix) = top >= 1e6 && step >= 1e5 ? (1e6, "M") : top >= 1e4 && step >= 100 ? (1e3, "k") : (1, "")
        let scaled = step / scale
        let decimals = scaled >= 1 ? 0 : min(6, Int((-log10(scaled)).rounded(.up)))
        return fixed(value / scale, decimals) + suffix
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

    /// 10^`decade` nanoseconds in the largest unit that keeps it whole: `100 ns`, `1 µs`, `10 ms`.
    private static func decadeLabel(_ decade: Int) -> String {
        let unit = min(decade / 3, 3)
        return fixed(pow(10, Double(decade - 3 * unit)), 0) + " " + ["ns", "µs", "ms", "s"][unit]
    }

    private static func significant(_ value: Double) -> String {
        fixed(value, value < 9.995 ? 2 : value < 99.95 ? 1 : 0)
    }

    /// `value` with `digits` decimals; a dash if it is not finite.
    private static func fixed(_ value: Double, _ digits: Int) -> String {
        value.isFinite ? String(format: "%.\(digits)f", value) : "–"
    }

    /// An SVG coordinate: one decimal, and 0 for anything not finite.
    private static func coordinate(_ value: Double) -> String {
        value.isFinite ? String(format: "%.1f", value) : "0"
    }

    private static func note(_ text: String) -> String { "<p class=\"note\">\(escape(text))</p>\n" }

    /// A table; every cell is escaped, columns from `numericFrom` align right.
    private static func table(_ head: [String], _ rows: [[String]], numericFrom: Int) -> String {
        func cells(_ row: [String], _ tag: String) -> String {
            row.enumerated().map { "<\(tag)\($0.offset >= numericFrom ? " class=\"n\"" : "")>\(escape($0.element))</\(tag)>" }.joined()
        }
        return "<table><thead><tr>\(cells(head, "th"))</tr></thead><tbody>\n"
            + rows.map { "<tr>\(cells($0, "td"))</tr>\n" }.joined() + "</tbody></table>\n"
    }

    /// `text` with & < > " ' as character references: safe in element
    /// content and in quoted attribute values.
    private static func escape(_ text: String) -> String {
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

    /// `word` as one shell word: as it is if it needs no quoting, otherwise
    /// in single quotes.
    private static func shellWord(_ word: String) -> String {
        let plain = !word.isEmpty && word.unicodeScalars.allSatisfy {
            $0.isASCII && ($0.properties.isAlphabetic || "0123456789._-/+:,=@%".unicodeScalars.contains($0))
        }
        return plain ? word : "'" + word.replacingOccurrences(of: "'", with: "'\\''") + "'"
    }

    private static let style = """
        body{font:14px/1.45 system-ui,sans-serif;color:#222;max-width:1040px;margin:24px auto;padding:0 16px}
        h1{margin:0 0 6px}h2{margin-top:28px;border-bottom:1px solid #ddd;padding-bottom:3px}h3{margin:14px 0 4px;font-size:15px}
        table{border-collapse:collapse;margin:6px 0}th,td{padding:3px 10px;border-bottom:1px solid #eee;text-align:left}
        th{background:#f6f6f6}.n{text-align:right;font-variant-numeric:tabular-nums}
        code{font-family:ui-monospace,monospace;background:#f3f3f3;padding:1px 4px;border-radius:3px}
        .badge{padding:2px 10px;border-radius:10px;color:#fff;font-weight:600}.clean{background:#2e7d32}.bad{background:#c62828}
        .note{color:#666;font-style:italic}.findings>li{margin:10px 0}.invariant{font-weight:600;color:#c62828}
        .detail{white-space:pre-wrap}.place{margin:4px 0;color:#444}.trail{margin:2px 0;font-size:13px}
        svg{display:block;max-width:100%;height:auto;margin:8px 0}svg text{font:11px system-ui,sans-serif;fill:#333}
        svg .title{font-size:13px;font-weight:600}svg .grid{stroke:#e6e6e6}svg .axis{stroke:#888}
        """
}

extension CallbackLatency {
    /// A latency as every report prints it: `850 ns`, `12.3 µs`, `4.56 ms`.
    public static func text(nanoseconds: UInt64) -> String { HTMLReport.nanoseconds(Double(nanoseconds)) }
}
