/// The `options` string `create` receives, read as `key=number` pairs
/// separated by commas (`"tlb=32, vram=0"`). Every key must be one the
/// plugin declares, with a value in its range; anything else is refused
/// with a message naming the option and the keys there are, so a user's
/// typo never silently runs the defaults.
public struct PluginOptions: Sendable {
    /// The values given, by key.
    public let values: [String: Int]

    /// Parses `options`; `keys` are the keys allowed and their ranges.
    public init(_ options: String, keys: KeyValuePairs<String, ClosedRange<Int>>) throws(PluginError) {
        let known = keys.map { "\($0.key) \(Self.describe($0.value))" }.joined(separator: ", ")
        var values: [String: Int] = [:]
        for pair in options.split(separator: ",") {
            let text = pair.trimmingSpaces()
            if text.isEmpty { continue }
            let parts = text.split(separator: "=", maxSplits: 1).map { $0.trimmingSpaces() }
            guard parts.count == 2, let value = Int(parts[1]) else {
                throw .invalid("option '\(text)': expected key=number (keys: \(known))")
            }
            guard let range = keys.first(where: { $0.key == parts[0] })?.value else {
                throw .invalid("option '\(text)': unknown key (keys: \(known))")
            }
            guard range.contains(value) else { throw .invalid("option '\(text)': \(parts[0]) must be \(Self.describe(range))") }
            guard values.updateValue(value, forKey: parts[0]) == nil else { throw .invalid("option '\(text)': \(parts[0]) given twice") }
        }
        self.values = values
    }

    /// The value of `key`, or `defaultValue` if it was not given.
    public subscript(_ key: String, default defaultValue: Int) -> Int { values[key] ?? defaultValue }

    private static func describe(_ range: ClosedRange<Int>) -> String {
        range.upperBound == Int.max ? ">= \(range.lowerBound)" : "\(range.lowerBound)...\(range.upperBound)"
    }
}

extension Substring {
    fileprivate func trimmingSpaces() -> String { String(drop { $0 == " " }.reversed().drop { $0 == " " }.reversed()) }
}
