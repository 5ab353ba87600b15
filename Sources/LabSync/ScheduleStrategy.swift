/// How a controlled scheduler picks the thread that runs next.
///
/// Written on the command line as `random`, `random:P`, `pct` or `pct:D`;
/// `description` gives back the canonical text, which `init(parsing:)`
/// reads, so a replay command can carry it.
public enum ScheduleStrategy: Sendable, Hashable, CustomStringConvertible {
    /// At every scheduling point, with probability `switchProbability`, a
    /// thread chosen uniformly among the other runnable ones runs next; a
    /// thread that blocks hands over to a uniformly chosen runnable one.
    case random(switchProbability: Double)
    /// Probabilistic concurrency testing (Burckhardt, Kothari, Musuvathi and
    /// Nagarakatte, "A randomized scheduler with probabilistic guarantees of
    /// finding bugs", ASPLOS 2010): random distinct thread priorities, the
    /// highest-priority runnable thread always runs, and `depth - 1` priority
    /// change points drawn uniformly over the first `horizon` steps lower the
    /// running thread's priority below every initial one. For a run of `n`
    /// threads and `k` steps, a bug of depth `depth` is found with
    /// probability at least 1 / (n * k^(depth - 1)).
    case pct(depth: Int)

    /// The switch probability of a plain `random`.
    public static let defaultSwitchProbability = 0.1
    /// The depth of a plain `pct`.
    public static let defaultDepth = 3
    /// The deepest `pct:D` accepted (each extra level divides the bound by k).
    public static let maximumDepth = 16

    /// Reads `random`, `random:P` (0 < P <= 1), `pct` or `pct:D` (1 <= D <= 16);
    /// nil for anything else.
    public init?(parsing text: String) {
        let parts = text.split(separator: ":", maxSplits: 1, omittingEmptySubsequences: false).map(String.init)
        switch parts[0] {
        case "random":
            guard parts.count == 2 else {
                self = .random(switchProbability: Self.defaultSwitchProbability)
                return
            }
            guard let p = Double(parts[1]), p > 0, p <= 1 else { return nil }
            self = .random(switchProbability: p)
        case "pct":
            guard parts.count == 2 else {
                self = .pct(depth: Self.defaultDepth)
                return
            }
            guard let d = Int(parts[1]), d >= 1, d <= Self.maximumDepth else { return nil }
            self = .pct(depth: d)
        default:
            return nil
        }
    }

    /// What `init(parsing:)` accepts, for error messages.
    public static let syntax = "random, random:P (0 < P <= 1), pct or pct:D (1 <= D <= \(maximumDepth))"

    public var description: String {
        switch self {
        case .random(let p): "random:\(p)"
        case .pct(let d): "pct:\(d)"
        }
    }
}
