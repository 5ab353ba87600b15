/// What a thread of a controlled run is waiting for: the operation, the
/// object's name and the caller's source line.
public struct WaitSite: Sendable, CustomStringConvertible {
    public let kind: SchedulingPointKind
    public let object: String
    public let site: SourceSite?

    public init(kind: SchedulingPointKind, object: String, site: SourceSite?) {
        self.kind = kind
        self.object = object
        self.site = site
    }

    public var description: String {
        let what = object.isEmpty ? "\(kind)" : "\(kind) '\(object)'"
        guard let site else { return what }
        return "\(what) at \(site)"
    }
}

/// A controlled run that cannot go on: every thread is blocked with nothing
/// that could wake it (no timeout, no sleep to end), or every runnable thread
/// has been spinning for a long time while the rest are blocked.
public struct DeadlockReport: Sendable, CustomStringConvertible {
    public enum Kind: String, Sendable {
        /// Every live thread blocked, none with a timeout.
        case deadlock
        /// Only spinning threads could run, and none got anywhere for `livelockSteps` steps.
        case livelock
        /// The run reached its `stepLimit` without ending.
        case stepLimit = "step limit"
    }

    /// One live thread at the time: its name and what it was doing.
    public struct Thread: Sendable, CustomStringConvertible {
        public let name: String
        /// "blocked", "spinning" or "runnable".
        public let state: String
        public let waitingFor: WaitSite?

        public var description: String {
            guard let waitingFor else { return "'\(name)' \(state)" }
            return "'\(name)' \(state) in \(waitingFor)"
        }
    }

    public let kind: Kind
    /// The scheduling step at which it was found.
    public let step: UInt64
    /// The virtual clock then, in nanoseconds.
    public let virtualNanoseconds: UInt64
    /// Every thread that had not finished, in the order they were made.
    public let threads: [Thread]

    public var description: String {
        let head = switch kind {
        case .deadlock: "deadlock at step \(step): every thread is blocked and nothing can wake one"
        case .livelock: "livelock at step \(step): only spinning threads can run and none gets anywhere"
        case .stepLimit: "step limit: the run reached step \(step) without ending"
        }
        return ([head] + threads.map { "  \($0)" }).joined(separator: "\n")
    }
}

/// One scheduling step as a trace keeps it.
public struct ScheduleStep: Sendable, Hashable {
    /// The step's number (the first step is 1).
    public let step: UInt64
    /// The thread that reached the point (its index in the order threads were made).
    public let thread: UInt32
    public let kind: SchedulingPointKind
    /// The object: a monitor's serial number, a spin lock's name hash, a thread's index.
    public let object: UInt32
}

/// How a controlled run went so far.
public struct ScheduleStatistics: Sendable, Hashable {
    /// Scheduling points passed.
    public var steps: UInt64
    /// Times the running thread changed.
    public var switches: UInt64
    /// The virtual clock.
    public var virtualNanoseconds: UInt64
    /// Threads made (the root included).
    public var threads: Int
    /// A digest of every step (thread, operation, object) in order: two runs
    /// with equal digests ran the same interleaving.
    public var digest: UInt64
    /// Names of threads the scheduler did not make that used its primitives
    /// (each makes the run irreproducible), at most a few.
    public var foreignThreads: [String]
    /// Decisions made (who runs next: after every point, and whenever the running thread stopped).
    public var decisions: UInt64 = 0
    /// Listed choices (`Configuration.choices`) the run followed so far, and
    /// the rest (at the run's end: those it skipped, their site or thread
    /// never coming up in their window).
    public var choicesFollowed = 0
    public var choicesSkipped = 0
}
