import Yams

/// A YAML node with its path in the document and its file, so every
/// error names the file, line and field. The typed readers refuse what
/// does not fit instead of guessing.
struct YAMLField {
    let node: Node
    let path: String
    let file: String

    func error(_ message: String) -> ScenarioError {
        ScenarioError(file: file, line: node.mark?.line, column: node.mark?.column, field: path, message: message)
    }

    private var scalarText: String? { node.scalar?.string }

    /// Where this field is written.
    var mark: SourceMark { SourceMark(file: file, line: node.mark?.line, column: node.mark?.column, field: path) }

    /// A length of time: seconds, or a number with a unit (`DurationText`).
    func duration(in range: ClosedRange<Double>) throws(ScenarioError) -> Double {
        guard let text = scalarText else { throw error("expected a duration (10s, 2m, 500ms), found \(kindName)") }
        do {
            return try DurationText.seconds(text, in: range)
        } catch {
            throw self.error(error.description)
        }
    }

    func string() throws(ScenarioError) -> String {
        guard let text = scalarText else { throw error("expected a string, found \(kindName)") }
        return text
    }

    func name() throws(ScenarioError) -> String {
        let text = try string()
        guard !text.isEmpty, text.allSatisfy({ $0.isLetter || $0.isNumber || $0 == "-" || $0 == "_" || $0 == "." }) else {
            throw error("'\(text)' is not a name (letters, digits, '-', '_', '.')")
        }
        return text
    }

    /// A workload's name: a name that may also hold spaces and `/` (`mine
    /// on app/heap`, as `--plugin` names the workloads it adds).
    func label() throws(ScenarioError) -> String {
        let text = try string()
        guard !text.isEmpty, text.first != " ", text.last != " ",
            text.allSatisfy({ $0.isLetter || $0.isNumber || "-_./ ".contains($0) })
        else {
            throw error("'\(text)' is not a workload name (letters, digits, spaces, '-', '_', '.', '/')")
        }
        return text
    }

    func integer(in range: ClosedRange<Int>) throws(ScenarioError) -> Int {
        guard let text = scalarText, let value = Self.parseInteger(text) else { throw error("expected an integer, found \(kindName)") }
        guard range.contains(value) else { throw error("\(value) is out of range \(Self.describe(range))") }
        return value
    }

    func unsigned() throws(ScenarioError) -> UInt64 {
        guard let text = scalarText, let value = Self.parseUnsigned(text) else { throw error("expected an unsigned integer, found \(kindName)") }
        return value
    }

    func number(in range: ClosedRange<Double>) throws(ScenarioError) -> Double {
        guard let text = scalarText, let value = Double(text.replacingUnderscores), value.isFinite else {
            throw error("expected a number, found \(kindName)")
        }
        guard range.contains(value) else { throw error("\(value) is out of range \(range.lowerBound)...\(range.upperBound)") }
        return value
    }

    func boolean() throws(ScenarioError) -> Bool {
        switch scalarText {
        case "true", "yes", "on": return true
        case "false", "no", "off": return false
        default: throw error("expected true or false, found \(kindName)")
        }
    }

    func choice<E: RawRepresentable & CaseIterable>(_ type: E.Type) throws(ScenarioError) -> E where E.RawValue == String {
        let text = try string()
        guard let value = E(rawValue: text) else {
            throw error("'\(text)' is not one of \(E.allCases.map { $0.rawValue }.joined(separator: ", "))")
        }
        return value
    }

    func sequence() throws(ScenarioError) -> [YAMLField] {
        guard let items = node.sequence else { throw error("expected a list, found \(kindName)") }
        return items.enumerated().map { YAMLField(node: $1, path: "\(path)[\($0)]", file: file) }
    }

    /// The fields of a mapping; a key not in `keys` is an error (a typo
    /// must not silently run the default).
    func mapping(keys: [String]) throws(ScenarioError) -> YAMLMapping {
        guard let mapping = node.mapping else { throw error("expected a mapping (key: value), found \(kindName)") }
        var fields: [String: YAMLField] = [:]
        for (key, value) in mapping {
            let keyField = YAMLField(node: key, path: path, file: file)
            let name = try keyField.string()
            let childPath = path.isEmpty ? name : "\(path).\(name)"
            guard keys.contains(name) else {
                throw YAMLField(node: key, path: childPath, file: file).error("unknown field (fields here: \(keys.joined(separator: ", ")))")
            }
            fields[name] = YAMLField(node: value, path: childPath, file: file)
        }
        return YAMLMapping(owner: self, fields: fields)
    }

    private var kindName: String {
        switch node {
        case .scalar: return "'\(scalarText ?? "")'"
        case .mapping: return "a mapping"
        case .sequence: return "a list"
        case .alias: return "an alias"
        }
    }

    static func describe(_ range: ClosedRange<Int>) -> String {
        range.upperBound == Int.max ? ">= \(range.lowerBound)" : "\(range.lowerBound)...\(range.upperBound)"
    }

    static func parseUnsigned(_ raw: String) -> UInt64? {
        let text = raw.replacingUnderscores
        if text.hasPrefix("0x") || text.hasPrefix("0X") { return UInt64(text.dropFirst(2), radix: 16) }
        return UInt64(text)
    }

    static func parseInteger(_ raw: String) -> Int? {
        let text = raw.replacingUnderscores
        if text.hasPrefix("0x") || text.hasPrefix("0X") { return Int(text.dropFirst(2), radix: 16) }
        return Int(text)
    }
}

/// The fields of one YAML mapping, by key.
struct YAMLMapping {
    let owner: YAMLField
    let fields: [String: YAMLField]

    subscript(_ key: String) -> YAMLField? { fields[key] }

    func required(_ key: String) throws(ScenarioError) -> YAMLField {
        guard let field = fields[key] else { throw owner.error("missing field '\(key)'") }
        return field
    }
}

extension String {
    fileprivate var replacingUnderscores: String { filter { $0 != "_" } }
}
