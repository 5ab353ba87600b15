/// The totals of a run of scripts: the figure the README quotes.
public struct Totals: Sendable, Hashable {
    public var scripts = 0
    public var compared = 0
    public var agreeing = 0
    public var known = 0
    public var unexpected = 0
    public var skipped = 0

    public init(_ results: [ScriptResult]) {
        for result in results {
            scripts += 1
            compared += result.compared
            agreeing += result.agreeing
            known += result.known
            unexpected += result.unexpected
            skipped += result.steps.count - result.compared
        }
    }

    /// Steps that agree, in per cent of the steps compared.
    public var agreement: Double { compared == 0 ? 0 : Double(agreeing) * 100 / Double(compared) }
}

/// Renders results as text: per script and step, agree or differ with
/// both sides' values, then the total.
public enum Report {
    public static func render(_ results: [ScriptResult], stale: [KnownDifference], reasons: [String: String], verbose: Bool) -> String {
        var out = ""
        for result in results {
            out += "== \(result.script.name) (\(result.script.path))\n"
            let width = min(44, result.steps.map(\.step.text.count).max() ?? 0)
            for step in result.steps {
                let text = step.step.text.rightPadded(width)
                out += "  " + String(step.step.number).leftPadded(3) + "  \(text)  \(status(step))\n"
                let shown = verbose ? step.observables : step.differences
                for o in shown {
                    let mark = o.agrees ? " " : o.known != nil ? "~" : "!"
                    out += "       \(mark) \(o.name.rightPadded(18)) kernel: \(o.kernel?.detail ?? "(none)")\n"
                    out += "         \(String(repeating: " ", count: 18)) model:  \(o.model?.detail ?? "(none)")\n"
                }
            }
            out += "  \(result.agreeing) of \(result.compared) steps agree"
            if result.known > 0 { out += ", \(result.known) known difference\(result.known == 1 ? "" : "s")" }
            if result.unexpected > 0 { out += ", \(result.unexpected) UNEXPECTED" }
            let skipped = result.steps.count - result.compared
            if skipped > 0 { out += ", \(skipped) skipped" }
            out += "\n\n"
        }
        let usedReasons = Set(results.flatMap { $0.steps.flatMap { $0.observables.flatMap { $0.known?.reasons ?? [] } } })
        if !usedReasons.isEmpty {
            out += "Known differences seen:\n"
            for key in usedReasons.sorted() { out += "  \(key): \(reasons[key] ?? "?")\n" }
            out += "\n"
        }
        if !stale.isEmpty {
            out += "Known-difference rows that matched no difference (the model agrees now, or the row is wrong; remove them):\n"
            for row in stale { out += "  line \(row.line): \(row)\n" }
            out += "\n"
        }
        out += summary(results) + "\n"
        return out
    }

    /// "Total on Linux X: N scripts, S steps compared, A agree (P%), ..."
    public static func summary(_ results: [ScriptResult]) -> String {
        let t = Totals(results)
        let kernel = results.first.map { "Linux \($0.facts.kernel)" } ?? "Linux"
        var line = "Total on \(kernel): \(t.scripts) scripts, \(t.compared) steps compared, \(t.agreeing) agree ("
        line += formatPercent(t.agreement) + "), \(t.known) known differences, \(t.unexpected) unexpected"
        if t.skipped > 0 { line += ", \(t.skipped) skipped" }
        return line
    }

    private static func status(_ step: StepResult) -> String {
        switch step.status {
        case .agree: return "agree"
        case .knownDifference:
            let reasons = Set(step.differences.flatMap { $0.known?.reasons ?? [] }).sorted().joined(separator: ", ")
            return "differ, known (\(reasons))"
        case .differ: return "DIFFER"
        case .skipped(let why): return "skipped: \(why)"
        }
    }
}

func formatPercent(_ value: Double) -> String {
    let tenths = Int((value * 10).rounded())
    return "\(tenths / 10).\(tenths % 10)%"
}

extension String {
    func leftPadded(_ width: Int) -> String { count >= width ? self : String(repeating: " ", count: width - count) + self }
    func rightPadded(_ width: Int) -> String { count >= width ? self : self + String(repeating: " ", count: width - count) }
}
