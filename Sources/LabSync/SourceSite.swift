/// A place in the source code: where a lock was taken, a sleep was attempted,
/// or a non-blockable section was entered.
///
/// Built from the caller's `#fileID` / `#line` / `#function` defaults, so a
/// violation report points at the line that broke the rule, not at the layer
/// that noticed it. It holds only static strings, so recording a site costs
/// nothing and types that carry one stay trivially copyable.
public struct SourceSite: Sendable, CustomStringConvertible {
    public let file: StaticString
    public let line: UInt
    public let function: StaticString

    @inlinable
    public init(file: StaticString = #fileID, line: UInt = #line, function: StaticString = #function) {
        self.file = file
        self.line = line
        self.function = function
    }

    public var description: String { "\(file):\(line) (\(function))" }
}
