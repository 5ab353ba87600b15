import Synchronization

/// A plugin handle's way back to the instance context that made it
/// (`HostLock`, `HostCompletion`), which may be gone when the plugin uses
/// the handle again.
///
/// Not a weak reference on purpose: a weakly referenced object gets a side
/// table, and every retain and release of it then takes the runtime's slow
/// path, and a context is retained by nearly every service a plugin calls.
/// Instead the context detaches its link as its deinit begins: calls that
/// got in finish first (the deinit waits for them), later ones get nil.
final class ContextLink<Target: AnyObject>: @unchecked Sendable {
    // @unchecked: `context` is written once, by the context's init, before
    // the link is shared (a handle is made only by a service of a live
    // context); `state` is atomic.
    private unowned(unsafe) var context: Target? = nil
    /// Calls in progress (the low bits), and `detached` once the context's
    /// deinit began.
    private let state = Atomic<Int>(0)
    private static var detached: Int { 1 << 62 }

    init() {}

    /// From the context's init, once it is complete.
    func attach(_ context: Target) {
        precondition(self.context == nil, "a context link is attached once")
        self.context = context
    }

    /// Runs `body` with the context if it is still alive (nil if not). The
    /// context stays alive until `body` returns; `body` must not keep it.
    func withContext<R>(_ body: (Target) -> R) -> R? {
        var current = state.load(ordering: .acquiring)
        while true {
            if current & Self.detached != 0 { return nil }
            let (exchanged, original) = state.compareExchange(expected: current, desired: current + 1, ordering: .acquiring)
            if exchanged { break }
            current = original
        }
        defer { state.subtract(1, ordering: .releasing) }
        guard let context else { return nil }
        return body(context)
    }

    /// From the context's deinit, first: no call gets in again, and the
    /// calls in progress finish before the context's fields go. `wait` lets
    /// them run (a call may be at a scheduling point of a controlled run,
    /// where only one thread runs: a yield of the run's domain, never a
    /// bare spin).
    func detach(waiting wait: () -> Void) {
        var current = state.load(ordering: .acquiring)
        while true {
            let (exchanged, original) = state.compareExchange(expected: current, desired: current | Self.detached, ordering: .acquiringAndReleasing)
            if exchanged { break }
            current = original
        }
        // Bounded by the calls in progress, each a report or a check.
        while state.load(ordering: .acquiring) != Self.detached { wait() }
    }
}
