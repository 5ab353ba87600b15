import Synchronization

/// A reader-writer lock whose waiters sleep: Linux's `rw_semaphore`
/// (`mmap_lock`, `anon_vma->rwsem`, `i_mmap_rwsem`).
///
/// Many readers or one writer. A waiting writer holds new readers back, so
/// a stream of readers cannot starve it. Acquiring may sleep: inside a
/// non-blockable section it is a context violation. The `try` forms never
/// sleep. With an `orderClass` and lock-order validation on, every
/// acquisition, shared or exclusive, is checked against the order seen so
/// far (a waiting writer holds new readers back, so a read can deadlock).
public final class SleepingRWLock: @unchecked Sendable {
    // @unchecked: the counters are only touched with `monitor` held.
    public let name: String
    private let domain: SyncDomain
    private let monitor: any Monitor
    private var readers = 0
    private var writer = false
    private var waitingWriters = 0
    /// Its lock class's hook (no reference counting on a path every thread shares).
    private let orderClass: LockOrderHook?
    /// The writer's `pthread_self`, 0 when there is none.
    private let writerThread = Atomic<UInt>(0)

    public init(_ name: String, domain: SyncDomain, orderClass: String? = nil) {
        self.name = name
        self.domain = domain
        self.monitor = domain.scheduler.makeMonitor(named: name)
        self.orderClass = domain.orderClass(orderClass)
    }

    public func lockShared(file: StaticString = #fileID, line: UInt = #line) {
        let site = SourceSite(file: file, line: line)
        domain.mightSleep(.sleepingLockAcquire, object: name, site: site)
        if let orderClass { orderClass.acquire(self, site: site) }
        monitor.lock(at: site)
        while writer || waitingWriters > 0 { monitor.wait(at: site) }
        readers += 1
        monitor.unlock()
    }

    public func tryLockShared(file: StaticString = #fileID, line: UInt = #line) -> Bool {
        monitor.lock()
        guard !writer && waitingWriters == 0 else {
            monitor.unlock()
            return false
        }
        readers += 1
        monitor.unlock()
        if let orderClass { orderClass.acquire(self, site: SourceSite(file: file, line: line), trylock: true) }
        return true
    }

    public func unlockShared() {
        if let orderClass { orderClass.release(self) }
        monitor.lock()
        precondition(readers > 0, "unlockShared on '\(name)' without a reader")
        readers -= 1
        if readers == 0 { monitor.broadcast() }
        monitor.unlock()
    }

    public func lockExclusive(file: StaticString = #fileID, line: UInt = #line) {
        let site = SourceSite(file: file, line: line)
        domain.mightSleep(.sleepingLockAcquire, object: name, site: site)
        if let orderClass { orderClass.acquire(self, site: site) }
        monitor.lock(at: site)
        waitingWriters += 1
        while writer || readers > 0 { monitor.wait(at: site) }
        waitingWriters -= 1
        writer = true
        writerThread.store(SpinLock.currentThread, ordering: .relaxed)
        monitor.unlock()
    }

    public func tryLockExclusive(file: StaticString = #fileID, line: UInt = #line) -> Bool {
        monitor.lock()
        guard !writer && readers == 0 else {
            monitor.unlock()
            return false
        }
        writer = true
        writerThread.store(SpinLock.currentThread, ordering: .relaxed)
        monitor.unlock()
        if let orderClass { orderClass.acquire(self, site: SourceSite(file: file, line: line), trylock: true) }
        return true
    }

    public func unlockExclusive() {
        if let orderClass { orderClass.release(self) }
        monitor.lock()
        precondition(writer, "unlockExclusive on '\(name)' without the writer")
        precondition(writerThread.load(ordering: .relaxed) == SpinLock.currentThread, "unlockExclusive on '\(name)' by a thread that is not the writer")
        writerThread.store(0, ordering: .relaxed)
        writer = false
        monitor.broadcast()
        monitor.unlock()
    }

    /// Whether the calling thread holds the lock exclusively.
    public var isHeldExclusivelyByCurrentThread: Bool { writerThread.load(ordering: .relaxed) == SpinLock.currentThread }

    /// Stops the process in debug builds if the calling thread does not hold
    /// the lock exclusively (Linux: `lockdep_assert_held_write`).
    @inline(__always)
    public func assertHeldExclusive(file: StaticString = #fileID, line: UInt = #line) {
        assert(isHeldExclusivelyByCurrentThread, "'\(name)' must be held exclusively here", file: file, line: line)
    }

    /// Stops the process in debug builds if the lock is not held at all
    /// (Linux: `lockdep_assert_held`; a reader is not told apart from
    /// another thread's reader unless lock order is validated, which
    /// records every holder).
    @inline(__always)
    public func assertHeld(file: StaticString = #fileID, line: UInt = #line) {
        assert(isHeldByCurrentThreadAsFarAsKnown, "'\(name)' must be held here", file: file, line: line)
    }

    private var isHeldByCurrentThreadAsFarAsKnown: Bool {
        if let orderClass { return orderClass.validator._withUnsafeGuaranteedRef { $0.isHeldByCurrentThread(instance: self) } }
        monitor.lock()
        defer { monitor.unlock() }
        return writer || readers > 0
    }

    @inlinable
    public func withShared<R, E: Error>(file: StaticString = #fileID, line: UInt = #line, _ body: () throws(E) -> R) throws(E) -> R {
        lockShared(file: file, line: line)
        defer { unlockShared() }
        return try body()
    }

    @inlinable
    public func withExclusive<R, E: Error>(file: StaticString = #fileID, line: UInt = #line, _ body: () throws(E) -> R) throws(E) -> R {
        lockExclusive(file: file, line: line)
        defer { unlockExclusive() }
        return try body()
    }
}
