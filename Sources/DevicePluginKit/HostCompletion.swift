import CDevicePluginABI

/// A host completion (Linux's `struct completion`): `complete` lets one
/// waiter through, present or future, so it also counts like a semaphore.
/// Completing never sleeps and may happen anywhere; waiting is [blockable].
/// Destroyed with the object.
public final class HostCompletion: @unchecked Sendable {
    // @unchecked: the handle is the host's; the host synchronises it.
    let host: Host
    let handle: OpaquePointer

    public init(host: Host, name: String) {
        self.host = host
        handle = name.withCString { host.table.pointee.completion_create(host.table.pointee.context, $0)! }
    }

    deinit { host.table.pointee.completion_destroy(handle) }

    /// [any-thread] Lets one waiter through.
    public func complete() { host.table.pointee.completion_complete(handle) }
    /// [any-thread] Lets every waiter through until `reinit`.
    public func completeAll() { host.table.pointee.completion_complete_all(handle) }
    /// [any-thread] Pending again.
    public func reinit() { host.table.pointee.completion_reinit(handle) }
    /// [blockable] Waits for a `complete`.
    public func wait() { _ = host.table.pointee.completion_wait(handle, 0) }
    /// [blockable] Waits at most `nanoseconds` (> 0); returns whether it was completed.
    public func wait(nanoseconds: UInt64) -> Bool {
        precondition(nanoseconds > 0, "a timeout of 0 means for ever: call wait()")
        return host.table.pointee.completion_wait(handle, nanoseconds)
    }
}
