/// One row of the known-differences list: where the model and the kernel
/// are expected to differ, and why. Data, not code: a row is removed when
/// the model is fixed (the harness reports rows that no longer differ).
public struct KnownDifference: Sendable, Hashable, CustomStringConvertible {
    /// A script name, or `*` for every script.
    public let script: String
    /// A step number, or nil for every step.
    public let step: Int?
    /// An observable name; a trailing `*` matches any ending (`pagemap *`, `*`).
    public let observable: String
    /// The keys of the reasons (`reason KEY: text` in the same file); a
    /// row may cite several, comma-separated, when causes overlap.
    public let reasons: [String]
    /// Where the row is (for messages).
    public let line: Int

    func matches(script name: String, step number: Int, observable candidate: String) -> Bool {
        guard script == "*" || script == name, step == nil || step == number else { return false }
        if observable.hasSuffix("*") { return candidate.hasPrefix(observable.dropLast()) }
        return candidate == observable
    }

    public var description: String {
        "\(script) \(step.map(String.init) ?? "*") \(reasons.joined(separator: ",")) \(observable)"
    }
}

/// The known-differences list: the reasons, and the rows that cite them.
///
///     # comment
///     reason KEY: why the model and Linux differ here
///     SCRIPT STEP KEY[,KEY] OBSERVABLE      (SCRIPT or STEP may be *; OBSERVABLE may end in *)
public struct KnownDifferences: Sendable {
    public let reasons: [String: String]
    public let rows: [KnownDifference]
    public let path: String

    public init(reasons: [String: String] = [:], rows: [KnownDifference] = [], path: String = "(none)") {
        self.reasons = reasons
        self.rows = rows
        self.path = path
    }

    public static func read(path: String) throws(ScriptError) -> KnownDifferences {
        guard let text = readTextFile(path) else { throw ScriptError(path: path, line: 0, message: "cannot read the file") }
        return try parse(text, path: path)
    }

    public static func parse(_ text: String, path: String) throws(ScriptError) -> KnownDifferences {
        var reasons: [String: String] = [:]
        var rows: [KnownDifference] = []
        for (index, raw) in text.split(separator: "\n", omittingEmptySubsequences: false).enumerated() {
            let line = index + 1
            let content = raw.split(separator: "#", maxSplits: 1, omittingEmptySubsequences: false).first.map(String.init) ?? ""
            let words = content.split(whereSeparator: { $0 == " " || $0 == "\t" || $0 == "\r" }).map(String.init)
            guard !words.isEmpty else { continue }
            if words[0] == "reason" {
                guard words.count >= 3, words[1].hasSuffix(":") else {
                    throw ScriptError(path: path, line: line, message: "expected `reason KEY: text`")
                }
                let key = String(words[1].dropLast())
                guard reasons[key] == nil else { throw ScriptError(path: path, line: line, message: "reason `\(key)` is defined twice") }
                reasons[key] = words[2...].joined(separator: " ")
                continue
            }
            guard words.count >= 4 else { throw ScriptError(path: path, line: line, message: "expected `SCRIPT STEP REASON OBSERVABLE`") }
            let step: Int?
            if words[1] == "*" {
                step = nil
            } else if let n = Int(words[1]), n > 0 {
                step = n
            } else {
                throw ScriptError(path: path, line: line, message: "a step is a number from 1 or *, not `\(words[1])`")
            }
            let keys = words[2].split(separator: ",").map(String.init)
            rows.append(KnownDifference(script: words[0], step: step, observable: words[3...].joined(separator: " "), reasons: keys, line: line))
        }
        for row in rows {
            for key in row.reasons where reasons[key] == nil {
                throw ScriptError(path: path, line: row.line, message: "no `reason \(key):` line for this row")
            }
        }
        return KnownDifferences(reasons: reasons, rows: rows, path: path)
    }

    /// The first row that expects this difference.
    func row(script: String, step: Int, observable: String) -> KnownDifference? {
        rows.first { $0.matches(script: script, step: step, observable: observable) }
    }
}
