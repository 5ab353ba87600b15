/// A cycle in the lock-order graph: "possible lock inversion", as Linux's
/// lockdep reports a circular locking dependency, with both chains and
/// where each lock was taken. Nothing has deadlocked yet: the threads took
/// the locks at different times, and the next time they run together they
/// can.
public struct LockOrderViolation: Sendable, CustomStringConvertible {
    /// The classes of the cycle, starting with the lock the reporting thread
    /// held (`a -> b -> ... -> a`, the last not repeated).
    public let classes: [String]
    /// The cycle goes through the `reclaim` pseudo-lock: a lock taken in a
    /// `[reclaim]` callback is also held around an allocation that may reclaim.
    public let involvesReclaim: Bool
    /// The chain of the thread that closed the cycle: what it held, where it
    /// took it, and the lock it then took.
    public let thisThread: [String]
    /// The chain seen before, each edge with its thread and sites.
    public let earlier: [String]

    /// `'a' -> 'b' -> 'a'`.
    public var cycle: String { (classes + classes.prefix(1)).map { "'\($0)'" }.joined(separator: " -> ") }

    public var description: String {
        let head = involvesReclaim
            ? "possible lock inversion with reclaim: a lock taken in reclaim is also held around an allocation that may reclaim: \(cycle)"
            : "possible lock inversion: \(cycle)"
        return head + "; this thread: " + thisThread.joined(separator: "; ") + "; earlier: " + earlier.joined(separator: "; ")
    }
}
