/// What is wrong with a scenario file: where (file, line, column), which
/// field (a path such as `plugins[1].bindings[0].space`), and why. Nothing
/// runs when a scenario has one.
public struct ScenarioError: Error, Sendable, Equatable, CustomStringConvertible {
    public var file: String
    public var line: Int?
    public var column: Int?
    /// The field's path in the document; empty for the whole document.
    public var field: String
    public var message: String

    public init(file: String, line: Int?, column: Int?, field: String, message: String) {
        self.file = file
        self.line = line
        self.column = column
        self.field = field
        self.message = message
    }

    /// `file:line:column: field: message`, as compilers print errors.
    public var description: String {
        var location = file
        if let line { location += ":\(line)" }
        if let column { location += ":\(column)" }
        return field.isEmpty ? "\(location): \(message)" : "\(location): \(field): \(message)"
    }
}

/// Where a part of a scenario was written: file, line, column and field
/// path, so a problem found only when the scenario is set up (a plugin
/// that does not load, options it refuses, a binding it rejects) is
/// reported at its place, as the reader reports its own. Marks never make
/// two scenarios differ: every mark equals every other.
public struct SourceMark: Sendable, Equatable, CustomStringConvertible {
    public var file: String
    public var line: Int?
    public var column: Int?
    public var field: String

    public init(file: String, line: Int? = nil, column: Int? = nil, field: String = "") {
        self.file = file
        self.line = line
        self.column = column
        self.field = field
    }

    public static func == (_: SourceMark, _: SourceMark) -> Bool { true }

    /// No place known (a scenario built in code).
    public static let unknown = SourceMark(file: "")

    /// The mark, if it names a place.
    public var known: SourceMark? { file.isEmpty ? nil : self }

    /// The error `message` at this place.
    public func error(_ message: String) -> ScenarioError {
        ScenarioError(file: file, line: line, column: column, field: field, message: message)
    }

    public var description: String { error("").description.replacingSuffix(": ") }
}

extension String {
    fileprivate func replacingSuffix(_ suffix: String) -> String { hasSuffix(suffix) ? String(dropLast(suffix.count)) : self }
}
