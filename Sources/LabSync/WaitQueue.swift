/// Threads waiting for a condition to become true: Linux's
/// `wait_queue_head_t` with `wait_event` / `wake_up_all`.
///
/// The waker changes the state the condition reads first, then calls
/// `wakeAll`; a waiter re-checks the condition after every wake-up, so a
/// wake-up is never lost and a spurious one is harmless. Waking never sleeps
/// and is allowed in non-blockable sections; waiting is not.
public final class WaitQueue: Sendable {
    public let name: String
    private let domain: SyncDomain
    private let monitor: any Monitor

    public init(_ name: String, domain: SyncDomain) {
        self.name = name
        self.domain = domain
        self.monitor = domain.scheduler.makeMonitor(named: name)
    }

    /// Blocks until `condition` returns true. `condition` runs with the
    /// queue's internal monitor held, so it must be short and must not sleep.
    public func wait(file: StaticString = #fileID, line: UInt = #line, until condition: () -> Bool) {
        let site = SourceSite(file: file, line: line)
        domain.mightSleep(.wait, object: name, site: site)
        monitor.lock(at: site)
        while !condition() { monitor.wait(at: site) }
        monitor.unlock()
    }

    /// Blocks until `condition` returns true or `timeout` has passed.
    /// Returns whether the condition became true. Used by watchdogs and by
    /// tests that must never hang.
    public func wait(timeout: Duration, file: StaticString = #fileID, line: UInt = #line, until condition: () -> Bool) -> Bool {
        let site = SourceSite(file: file, line: line)
        domain.mightSleep(.wait, object: name, site: site)
        let deadline = domain.now() + timeout
        monitor.lock(at: site)
        defer { monitor.unlock() }
        while !condition() {
            let left = deadline - domain.now()
            if left <= .zero { return false }
            _ = monitor.wait(timeout: left, at: site)
        }
        return true
    }

    /// Wakes every waiter so it re-checks its condition.
    public func wakeAll() {
        monitor.lock()
        monitor.broadcast()
        monitor.unlock()
    }
}
