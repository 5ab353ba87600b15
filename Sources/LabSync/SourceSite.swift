/// A place in the source code: where a lock was taken, a sleep was attempted,
/// or a non-blockable section was entered.
///
/// Public APIs that record a site take `file: StaticString = #fileID, line:
/// UInt = #line` so the site is the caller's line, not the layer's. It holds
/// only a static string, so recording it costs nothing and types that carry
/// one stay trivially copyable.
public struct SourceSite: Sendable, CustomStringConvertible {
    public let file: StaticString
    public let line: UInt

    @inlinable
    public init(file: StaticString = #fileID, line: UInt = #line) {
        self.file = file
        self.line = line
    }

    public var description: String { "\(file):\(line)" }
}
