/// A lock whose waiters sleep: Linux's `struct mutex` or `rw_semaphore` in
/// write mode.
///
/// Acquiring it may sleep, so acquiring it inside a non-blockable section is
/// a context violation (recorded even when the lock happens to be free, as
/// lockdep and `might_sleep` do: the bug is the possibility).
/// `tryLock` never sleeps and is allowed anywhere: it is the fast-fail path
/// of a non-blockable callback ("fails quickly on shrinker path": Jérôme
/// Glisse, linux-kernel, 2013-09-30, "Re: [PATCH] anon_vmas: Convert the
/// rwsem to an rwlock_t").
public final class SleepingLock: Sendable {
    public let name: String
    private let domain: SyncDomain
    private let monitor: any Monitor

    public init(_ name: String, domain: SyncDomain) {
        self.name = name
        self.domain = domain
        self.monitor = domain.scheduler.makeMonitor(named: name)
    }

    /// Acquires the lock, sleeping while another thread holds it.
    public func lock(file: StaticString = #fileID, line: UInt = #line) {
        let site = SourceSite(file: file, line: line)
        domain.mightSleep(.sleepingLockAcquire, object: name, site: site)
        monitor.lock(at: site)
    }

    /// Acquires the lock if it is free; never sleeps.
    public func tryLock() -> Bool { monitor.tryLock() }

    public func unlock() { monitor.unlock() }

    /// Runs `body` with the lock held.
    @inlinable
    public func withLock<R, E: Error>(file: StaticString = #fileID, line: UInt = #line, _ body: () throws(E) -> R) throws(E) -> R {
        lock(file: file, line: line)
        defer { unlock() }
        return try body()
    }

    /// Runs `body` with the lock held if it is free now; returns nil otherwise.
    @inlinable
    public func withLockIfAvailable<R, E: Error>(_ body: () throws(E) -> R) throws(E) -> R? {
        guard tryLock() else { return nil }
        defer { unlock() }
        return try body()
    }
}
