public import LabSync

/// A broken rule of the notifier contract (docs/CONTRACT.md, rules 2 and 3).
public struct ContractViolation: Sendable, CustomStringConvertible {
    public enum Kind: Sendable, Hashable {
        /// A subscriber answered `retry` to a blockable start. Only a
        /// non-blockable start may fail (Linux WARNs the same way).
        case retryFromBlockableStart(subscriber: String)
        /// A successful start was dropped without its end.
        case unpairedStart
    }

    public let kind: Kind
    public let range: InvalidationRange?
    public let site: SourceSite
    public let thread: ThreadIdentity

    public init(kind: Kind, range: InvalidationRange?, site: SourceSite, thread: ThreadIdentity = .current) {
        self.kind = kind
        self.range = range
        self.site = site
        self.thread = thread
    }

    public var description: String {
        let what: String
        switch kind {
        case .retryFromBlockableStart(let subscriber):
            what = "subscriber '\(subscriber)' answered retry to a blockable invalidateRangeStart"
        case .unpairedStart:
            what = "a successful invalidateRangeStart was never ended"
        }
        let range = self.range.map { " for \($0)" } ?? ""
        return "\(what)\(range) at \(site) on thread \(thread)"
    }
}
