/// What makes two findings the same bug, as syzkaller makes two crashes
/// the same by their title: the invariant, what exactly broke, the plugin
/// instance, the callback or access path, and the kind of the invalidation
/// that preceded it. Every part is plain text, so a new kind of violation
/// (a write through a read-only translation, say) or an explicit issuing
/// instance fills a field and needs no new key.
public struct BugKey: Hashable, Sendable {
    public var invariant: Finding.Invariant
    /// The kind within the invariant, when it has kinds: the primary's
    /// violation kind, a context violation's operation and lock. nil: the
    /// invariant says it all.
    public var kind: String?
    /// The plugin instance involved (`gpu#0`, as the run's counters name
    /// it); nil for the primary, the CPU or the lab.
    public var instance: String?
    /// The callback (`interval invalidate`) or access path (`device access`,
    /// `CPU read`, `exit-release read`) where it happened.
    public var path: String
    /// The event of the invalidation that preceded it on the page (for a
    /// callback: the one in progress), nil if there was none.
    public var event: String?

    public init(invariant: Finding.Invariant, kind: String? = nil, instance: String? = nil, path: String, event: String? = nil) {
        self.invariant = invariant
        self.kind = kind
        self.instance = instance
        self.path = path
        self.event = event
    }

    /// One line, as a bug tracker lists it: `use after free: mirror-broken#0
    /// device access after vmscan`.
    public var title: String {
        var head = invariant.rawValue
        if let kind, kind != invariant.rawValue { head += " (\(kind))" }
        var subject = [instance, path].compactMap { $0 }.joined(separator: " ")
        if let event {
            switch invariant {
            case .contextViolation, .retryFromBlockableStart, .unpairedStartEnd: subject += " during \(event)"
            default: subject += " after \(event)"
            }
        }
        return "\(head): \(subject)"
    }
}

/// Findings that are one bug: how often it happened, when first, the
/// first occurrence with its full evidence and a few more, and the
/// downstream symptoms the oracle saw of the same bad accesses (a root
/// cause's lost writes and leaks are counted here, not as bugs of their own).
public struct Bug: Sendable {
    public var key: BugKey
    /// Occurrences of the root finding (symptoms not included).
    public var count: Int
    /// When it was first seen, in seconds since the run's start.
    public var firstSeenSeconds: Double
    /// The earliest occurrence kept, with its evidence.
    public var first: Finding
    /// Further occurrences (at most `Bug.examplesKept`).
    public var examples: [Finding]
    /// Symptoms of the same accesses, by invariant (counted; none is a bug of its own).
    public var symptoms: [(invariant: Finding.Invariant, count: Int)]
    /// A few of those symptoms, with their evidence.
    public var symptomExamples: [Finding]

    public static let examplesKept = 4
    public static let symptomExamplesKept = 3

    public init(
        key: BugKey, count: Int, firstSeenSeconds: Double, first: Finding, examples: [Finding] = [],
        symptoms: [(invariant: Finding.Invariant, count: Int)] = [], symptomExamples: [Finding] = []
    ) {
        self.key = key
        self.count = count
        self.firstSeenSeconds = firstSeenSeconds
        self.first = first
        self.examples = examples
        self.symptoms = symptoms
        self.symptomExamples = symptomExamples
    }

    public var title: String { key.title }

    /// Root findings and symptoms together.
    public var total: Int { count + symptoms.reduce(0) { $0 + $1.count } }
}
