import CLabSyncShims

/// Who a thread is, for reports: the kernel thread id and the name the lab gave it.
public struct ThreadIdentity: Sendable, Hashable, CustomStringConvertible {
    /// The Linux thread id (`gettid`), stable for the thread's lifetime.
    public let tid: Int32
    /// The name given at spawn, or `"thread-<tid>"` for threads the lab did not start.
    public let name: String

    public init(tid: Int32, name: String) {
        self.tid = tid
        self.name = name
    }

    /// The identity of the calling thread.
    public static var current: ThreadIdentity { ExecutionContext.current.thread }

    public var description: String { "'\(name)' (tid \(tid))" }

    static func currentTID() -> Int32 {
        mmulab_gettid()
    }
}
