/// An operation that may sleep.
public enum SleepingOperation: String, Sendable, Hashable {
    case sleep = "sleep"
    case wait = "wait"
    case sleepingLockAcquire = "sleeping lock acquire"
    case completionWait = "completion wait"
}

/// A sleep, wait or sleeping-lock acquisition attempted inside a
/// non-blockable section: the lab's "BUG: sleeping function called from
/// invalid context".
///
/// Invalidation callbacks may sleep only when the caller allows it; the
/// shrinker and OOM-reaper paths must fail fast instead (Andrea Arcangeli,
/// linux-kernel, 2008-05-07, "Re: [PATCH 01 of 11] mmu-notifier-core";
/// Jérôme Glisse, linux-kernel, 2013-09-30, "Re: [PATCH] anon_vmas: Convert
/// the rwsem to an rwlock_t"; Linux: non_block_start() in
/// mn_hlist_invalidate_range_start).
public struct ContextViolation: Sendable, CustomStringConvertible {
    /// What was attempted.
    public let operation: SleepingOperation
    /// The object involved (a lock's or wait queue's name), if any.
    public let object: String
    /// Where it was attempted.
    public let site: SourceSite
    /// The innermost non-blockable section open at the time.
    public let context: SectionDescription
    /// How many non-blockable sections were open.
    public let depth: Int
    /// The offending thread.
    public let thread: ThreadIdentity
    /// Whose code the thread was running (a plugin's callback), if its
    /// caller said so (`ExecutionContext.enterCurrentCallee`).
    public var callee: CalleeDescription? = nil

    public var description: String {
        let what = object.isEmpty ? operation.rawValue : "\(operation.rawValue) on '\(object)'"
        return "sleeping function called from invalid context: \(what)\(callee.map { " in \($0)" } ?? "") at \(site) "
            + "on thread \(thread), inside \(context) (non-blockable depth \(depth))"
    }
}
