/// Whose code the current thread is running on someone else's behalf: a
/// plugin's callback, named by the host that made the call. A context
/// violation inside it names the callee and the operation, the way the
/// kernel's "sleeping function called from invalid context" splat names
/// the function in its backtrace.
///
/// Trivially copyable, like `NonBlockableSection`: the callee is an
/// unretained reference that must outlive the call (the host's record of
/// the plugin instance does), and it is asked its name only on the owning
/// thread while the call is under way (`described`).
public struct CalleeFrame: @unchecked Sendable {
    // @unchecked: `callee` is only dereferenced on the owning thread during the call.
    private unowned(unsafe) let callee: any SectionSubject
    /// The operation called: `invalidate_range_start`, `clear_young`, ...
    public let operation: StaticString

    public init(callee: any SectionSubject, operation: StaticString) {
        self.callee = callee
        self.operation = operation
    }

    /// A self-contained copy for reports.
    public var described: CalleeDescription {
        CalleeDescription(callee: callee.sectionSubjectName, operation: "\(operation)")
    }
}

/// A callee as reported: plain strings, safe to keep.
public struct CalleeDescription: Sendable, Hashable, CustomStringConvertible {
    /// Who was called (a plugin instance, as its host names it).
    public let callee: String
    /// What was called.
    public let operation: String

    public init(callee: String, operation: String) {
        self.callee = callee
        self.operation = operation
    }

    public var description: String { "\(callee) \(operation)" }
}

extension ExecutionContext {
    /// Marks the calling thread as running `frame` until the matching
    /// `restoreCurrentCallee(_:)`, to which pass what this returns (calls nest).
    @inline(__always)
    public static func enterCurrentCallee(_ frame: CalleeFrame) -> CalleeFrame? {
        withCurrent { $0.swapCallee(frame) }
    }

    /// Ends the frame `enterCurrentCallee` opened, restoring the one it returned.
    @inline(__always)
    public static func restoreCurrentCallee(_ previous: CalleeFrame?) {
        withCurrent { _ = $0.swapCallee(previous) }
    }

    /// The innermost callee the thread is running, described (nil: none).
    public var currentCallee: CalleeDescription? { callee?.described }
}
