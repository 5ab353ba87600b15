/// A one-shot or counting event: Linux's `struct completion`.
///
/// `complete()` lets one waiter through, `completeAll()` lets every present
/// and future waiter through. Waiting may sleep; completing never does, so a
/// non-blockable callback may signal a completion that a blockable thread
/// waits for (defer the sleeping work, fail fast in place: Jérôme Glisse,
/// linux-kernel, 2013-09-30, "Re: [PATCH] anon_vmas: Convert the rwsem to an
/// rwlock_t").
public final class Completion: @unchecked Sendable {
    // @unchecked: `done` is only touched with the monitor held.
    public let name: String
    private let domain: SyncDomain
    private let monitor: any Monitor
    private var done = 0
    private static let all = Int.max / 2

    public init(_ name: String, domain: SyncDomain) {
        self.name = name
        self.domain = domain
        self.monitor = domain.scheduler.makeMonitor(named: name)
    }

    /// Lets one waiter (present or future) through.
    public func complete() {
        monitor.lock()
        if done < Self.all { done += 1 }
        monitor.signal()
        monitor.unlock()
    }

    /// Lets every waiter through, now and later, until `reinit`.
    public func completeAll() {
        monitor.lock()
        done = Self.all
        monitor.broadcast()
        monitor.unlock()
    }

    /// Makes the completion pending again.
    public func reinit() {
        monitor.lock()
        done = 0
        monitor.unlock()
    }

    /// Whether a wait would return at once.
    public var isDone: Bool {
        monitor.lock()
        defer { monitor.unlock() }
        return done > 0
    }

    /// Blocks until completed.
    public func wait(file: StaticString = #fileID, line: UInt = #line) {
        let site = SourceSite(file: file, line: line)
        domain.mightSleep(.completionWait, object: name, site: site)
        monitor.lock(at: site)
        while done == 0 { monitor.wait(at: site) }
        if done < Self.all { done -= 1 }
        monitor.unlock()
    }

    /// Blocks until completed or `timeout` has passed; returns whether it completed.
    public func wait(timeout: Duration, file: StaticString = #fileID, line: UInt = #line) -> Bool {
        let site = SourceSite(file: file, line: line)
        domain.mightSleep(.completionWait, object: name, site: site)
        let deadline = domain.now() + timeout
        monitor.lock(at: site)
        defer { monitor.unlock() }
        while done == 0 {
            let left = deadline - domain.now()
            if left <= .zero { return false }
            _ = monitor.wait(timeout: left, at: site)
        }
        if done < Self.all { done -= 1 }
        return true
    }
}
