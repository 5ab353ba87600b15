import Foundation

/// The report's charts: inline SVG, drawn from numbers only (no scripts).
extension HTMLReport {
    static let palette = ["#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf", "#7f7f7f", "#bcbd22"]

    /// A horizontal line across a chart at `y`, with its label at the right
    /// (a watermark, the total of frames).
    struct Reference {
        var label: String
        var y: Double
    }

    /// The y axis of a line chart: linear from 0 (or below, for negative
    /// values), or logarithmic in whole decades, where values below the
    /// lowest decade (zero among them) are drawn on it.
    enum Scale {
        case linear
        case logarithmic
    }

    /// An SVG line chart, one line per series (colours from `palette`),
    /// with ticked axes, a title, reference lines and, if `legend`, a legend
    /// at the right (each name followed by `legendNotes` for it). Points
    /// that are not finite are dropped; with none left it is the `empty`
    /// note instead.
    static func lineChart(
        title: String, xLabel: String, yLabel: String, series: [(name: String, points: [(x: Double, y: Double)])], legend: Bool,
        empty: String, scale: Scale = .linear, references: [Reference] = [], legendNotes: [String: String] = [:]
    ) -> String {
        let lines = series.map { (name: $0.name, points: $0.points.filter { $0.x.isFinite && $0.y.isFinite }) }.filter { !$0.points.isEmpty }
        let all = lines.flatMap(\.points)
        guard let minX = all.map(\.x).min(), let maxX = all.map(\.x).max(), let minY = all.map(\.y).min(), var maxY = all.map(\.y).max()
        else { return note(empty) }
        let marks = references.filter { $0.y.isFinite }
        maxY = max(maxY, marks.map(\.y).max() ?? maxY)
        let (x0, x1) = maxX > minX ? (minX, maxX) : (minX - 0.5, maxX + 0.5)
        let xStep = niceStep((x1 - x0) / 6)
        let (left, top, w, h) = (64.0, 32.0, 560.0, 220.0)
        let names = lines.map { $0.name + (legendNotes[$0.name].map { " \($0)" } ?? "") }
        let legendWidth = max(legend ? 40 + 7 * Double(names.map(\.count).max() ?? 0) : 16, marks.isEmpty ? 0 : 16 + 7 * Double(marks.map(\.label.count).max() ?? 0))
        let (width, height) = (left + w + legendWidth, max(top + h + 46, top + 18 * Double(lines.count) + 10))
        func px(_ x: Double) -> String { coordinate(left + (x - x0) / (x1 - x0) * w) }

        // The y axis: the mapping to pixels and its ticks with their labels.
        let yPixel: (Double) -> Double
        var yTicks: [(value: Double, label: String)] = []
        let yBottom: Double
        switch scale {
        case .linear:
            let yStep = niceStep((max(maxY, min(0, minY) + 1) - min(0, minY)) / 5)
            let y0 = (min(0, minY) / yStep).rounded(.down) * yStep
            let y1 = max((maxY / yStep).rounded(.up) * yStep, y0 + yStep)
            let yTop = max(abs(y0), abs(y1))
            yPixel = { top + h - ($0 - y0) / (y1 - y0) * h }
            yTicks = ticks(y0, y1, step: yStep).map { ($0, tick($0, step: yStep, top: yTop)) }
            yBottom = y0
        case .logarithmic:
            let positive = all.map(\.y).filter { $0 > 0 }
            let low = (log10(positive.min() ?? 1)).rounded(.down)
            let high = max((log10(max(maxY, 1))).rounded(.up), low + 1)
            yPixel = { top + h - (log10(max($0, pow(10, low))) - low) / (high - low) * h }
            yTicks = stride(from: low, through: high, by: 1).map { (pow(10, $0), decade(Int($0))) }
            yBottom = pow(10, low)
        }
        func py(_ y: Double) -> String { coordinate(yPixel(y)) }

        var svg = svgOpen(width: width, height: height, title: title)
        svg += "<text class=\"title\" x=\"\(coordinate(left))\" y=\"18\">\(escape(title))</text>\n"
        for (value, label) in yTicks {
            svg += "<line class=\"grid\" x1=\"\(px(x0))\" x2=\"\(px(x1))\" y1=\"\(py(value))\" y2=\"\(py(value))\"/>"
                + "<text x=\"\(coordinate(left - 6))\" y=\"\(py(value))\" dy=\"4\" text-anchor=\"end\">\(label)</text>\n"
        }
        for x in ticks(x0, x1, step: xStep) {
            svg += "<line class=\"axis\" x1=\"\(px(x))\" x2=\"\(px(x))\" y1=\"\(py(yBottom))\" y2=\"\(coordinate(top + h + 4))\"/>"
                + "<text x=\"\(px(x))\" y=\"\(coordinate(top + h + 16))\" text-anchor=\"middle\">\(tick(x, step: xStep, top: max(abs(x0), abs(x1))))</text>\n"
        }
        svg += "<line class=\"axis\" x1=\"\(px(x0))\" x2=\"\(px(x1))\" y1=\"\(py(yBottom))\" y2=\"\(py(yBottom))\"/>"
            + "<line class=\"axis\" x1=\"\(px(x0))\" x2=\"\(px(x0))\" y1=\"\(py(yBottom))\" y2=\"\(coordinate(top))\"/>\n"
        svg += "<text x=\"\(coordinate(left + w / 2))\" y=\"\(coordinate(top + h + 36))\" text-anchor=\"middle\">\(escape(xLabel))</text>"
            + "<text transform=\"translate(14 \(coordinate(top + h / 2))) rotate(-90)\" text-anchor=\"middle\">\(escape(yLabel))</text>\n"
        // Labels of lines that lie close together are pushed apart upwards
        // (the watermarks of a large machine are a few pixels apart).
        let order = marks.indices.sorted { yPixel(marks[$0].y) > yPixel(marks[$1].y) }
        var labelY: [Double] = []
        for index in order { labelY.append(min(yPixel(marks[index].y), (labelY.last ?? .infinity) - 12)) }
        for (rank, index) in order.enumerated() {
            let mark = marks[index]
            svg += "<g class=\"reference\"><line x1=\"\(px(x0))\" x2=\"\(px(x1))\" y1=\"\(py(mark.y))\" y2=\"\(py(mark.y))\"/>"
                + "<text x=\"\(coordinate(left + w + 6))\" y=\"\(coordinate(labelY[rank]))\" dy=\"4\">\(escape(mark.label))</text></g>\n"
        }
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
                    + "<text x=\"\(coordinate(left + w + 34))\" y=\"\(coordinate(y + 10))\">\(escape(names[index]))</text></g>\n"
            }
        }
        return svg + "</svg>\n"
    }

    /// `10^exponent` as an axis label: `1`, `10`, `100`, `1k`, `10k`, `1M`.
    private static func decade(_ exponent: Int) -> String {
        if exponent < 0 { return fixed(pow(10, Double(exponent)), -exponent) }
        if exponent < 3 { return fixed(pow(10, Double(exponent)), 0) }
        if exponent < 6 { return fixed(pow(10, Double(exponent - 3)), 0) + "k" }
        return fixed(pow(10, Double(exponent - 6)), 0) + "M"
    }

    /// An SVG horizontal bar chart of nanosecond values on a log scale
    /// (whole decades; a value under 1 ns is drawn as 1 ns).
    static func barChart(title: String, bars: [(label: String, value: UInt64)]) -> String {
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

    /// 10^`decade` nanoseconds in the largest unit that keeps it whole: `100 ns`, `1 µs`, `10 ms`.
    private static func decadeLabel(_ decade: Int) -> String {
        let unit = min(decade / 3, 3)
        return fixed(pow(10, Double(decade - 3 * unit)), 0) + " " + ["ns", "µs", "ms", "s"][unit]
    }
}
