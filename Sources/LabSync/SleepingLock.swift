import Synchronization

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
///
/// It knows its holder: `unlock` by any other thread stops the process (a
/// mutex is released by its owner; the host checks a plugin's unlock before
/// it gets here). With an `orderClass` and lock-order validation on, every
/// acquisition is checked against the order seen so far.
public final class SleepingLock: Sendable {
    public let name: String
    private let domain: SyncDomain
    private let monitor: any Monitor
    /// The holder's `pthread_self`, 0 while free.
    private let owner = Atomic<UInt>(0)
    /// Its lock class's hook (no reference counting on a path every thread shares).
    private let orderClass: LockOrderHook?

    public init(_ name: String, domain: SyncDomain, orderClass: String? = nil) {
        self.name = name
        self.domain = domain
        self.monitor = domain.scheduler.makeMonitor(named: name)
        self.orderClass = domain.orderClass(orderClass)
    }

    /// Acquires the lock, sleeping while another thread holds it.
    public func lock(file: StaticString = #fileID, line: UInt = #line) {
        let site = SourceSite(file: file, line: line)
        domain.mightSleep(.sleepingLockAcquire, object: name, site: site)
        // Before waiting: an inversion is reported before it can deadlock.
        if let orderClass { orderClass.acquire(self, site: site) }
        monitor.lock(at: site)
        owner.store(SpinLock.currentThread, ordering: .relaxed)
    }

    /// Acquires the lock if it is free; never sleeps.
    public func tryLock(file: StaticString = #fileID, line: UInt = #line) -> Bool {
        guard monitor.tryLock() else { return false }
        owner.store(SpinLock.currentThread, ordering: .relaxed)
        if let orderClass { orderClass.acquire(self, site: SourceSite(file: file, line: line), trylock: true) }
        return true
    }

    /// Releases the lock. Only its holder may: anything else stops the process.
    public func unlock() {
        precondition(owner.load(ordering: .relaxed) == SpinLock.currentThread, "unlock of lock '\(name)' by a thread that does not hold it")
        owner.store(0, ordering: .relaxed)
        if let orderClass { orderClass.release(self) }
        monitor.unlock()
    }

    /// Whether the calling thread holds the lock.
    public var isHeldByCurrentThread: Bool { owner.load(ordering: .relaxed) == SpinLock.currentThread }

    /// Whether any thread holds the lock now (a snapshot).
    public var isLocked: Bool { owner.load(ordering: .relaxed) != 0 }

    /// Stops the process in debug builds if the calling thread does not hold
    /// the lock (Linux: `lockdep_assert_held`).
    @inline(__always)
    public func assertHeld(file: StaticString = #fileID, line: UInt = #line) {
        assert(isHeldByCurrentThread, "'\(name)' must be held here", file: file, line: line)
    }

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
