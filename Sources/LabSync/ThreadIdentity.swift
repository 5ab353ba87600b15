import CLabSyncShims

/// Who a thread is, for reports: the kernel thread id and the name the lab gave it.
public struct ThreadIdentity: Sendable, Hashable, CustomStringConvertible {
    /// The Linux thread id (`gettid`), stable for the thread's lifetime.
    public let tid: Int32
    /// The name given at spawn, or `"thread-<tid>"` for threads the lab did not start.
    public let name: String
    /// Its index in a controlled run (the order threads were made), which,
    /// unlike the tid, is the same in every replay; nil for other threads.
    public let scheduledIndex: Int?

    public init(tid: Int32, name: String, scheduledIndex: Int? = nil) {
        self.tid = tid
        self.name = name
        self.scheduledIndex = scheduledIndex
    }

    /// The identity of the calling thread.
    public static var current: ThreadIdentity { ExecutionContext.current.thread }

    /// A controlled run's threads are named by index, so reports replay word for word.
    public var description: String {
        if let scheduledIndex { return "'\(name)' (scheduled thread #\(scheduledIndex))" }
        return "'\(name)' (tid \(tid))"
    }

    static func currentTID() -> Int32 {
        mmulab_gettid()
    }
}
