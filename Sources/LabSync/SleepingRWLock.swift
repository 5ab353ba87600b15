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
    // @unchecked: `writer` and `waitingWriters` are only touched with
    // `monitor` held; `state` is atomic.
    public let name: String
    private let domain: SyncDomain
    private let monitor: any Monitor
    /// The readers holding the lock (low bits) and `blocked`, set while a
    /// writer holds the lock or waits for it (changed under `monitor`).
    /// Free-running, a reader takes and drops the lock with one atomic
    /// operation on it when no writer is about (the rw_semaphore fast path):
    /// a mutex round trip on every CPU access was two fifths of its cost.
    private let state = Atomic<Int>(0)
    private static let blocked = 1 << 40
    private static let readerMask = blocked - 1
    private var writer = false
    private var waitingWriters = 0
    /// The domain's scheduler decides every interleaving: every acquisition
    /// takes the monitor, whose lock and waits are its scheduling points.
    private let controlled: Bool
    /// Its lock class's hook (no reference counting on a path every thread shares).
    private let orderClass: LockOrderHook?
    /// The writer's `pthread_self`, 0 when there is none.
    private let writerThread = Atomic<UInt>(0)

    public init(_ name: String, domain: SyncDomain, orderClass: String? = nil) {
        self.name = name
        self.domain = domain
        self.monitor = domain.scheduler.makeMonitor(named: name)
        self.orderClass = domain.orderClass(orderClass)
        controlled = domain.isControlled
    }

    /// The readers holding the lock now.
    private var readers: Int { state.load(ordering: .acquiring) & Self.readerMask }

    /// One reader in if no writer holds or waits (free-running only).
    @inline(__always)
    private func tryFastShared() -> Bool {
        var current = state.load(ordering: .relaxed)
        while current & Self.blocked == 0 {
            let (exchanged, original) = state.compareExchange(expected: current, desired: current + 1, ordering: .acquiring)
            if exchanged { return true }
            current = original
        }
        return false
    }

    public func lockShared(file: StaticString = #fileID, line: UInt = #line) {
        let site = SourceSite(file: file, line: line)
        domain.mightSleep(.sleepingLockAcquire, object: name, site: site)
        if let orderClass { orderClass.acquire(self, site: site) }
        if !controlled && tryFastShared() { return }
        monitor.lock(at: site)
        while writer || waitingWriters > 0 { monitor.wait(at: site) }
        state.add(1, ordering: .acquiring)
        monitor.unlock()
    }

    public func tryLockShared(file: StaticString = #fileID, line: UInt = #line) -> Bool {
        if !controlled {
            guard tryFastShared() else { return false }
        } else {
            monitor.lock()
            guard !writer && waitingWriters == 0 else {
                monitor.unlock()
                return false
            }
            state.add(1, ordering: .acquiring)
            monitor.unlock()
        }
        if let orderClass { orderClass.acquire(self, site: SourceSite(file: file, line: line), trylock: true) }
        return true
    }

    public func unlockShared() {
        if let orderClass { orderClass.release(self) }
        if !controlled {
            let before = state.subtract(1, ordering: .releasing).oldValue
            precondition(before & Self.readerMask > 0, "unlockShared on '\(name)' without a reader")
            // The last reader out wakes a writer that waits. The writer tests
            // the count under the monitor, so taking it here cannot slip
            // between its test and its wait.
            if before & Self.readerMask == 1 && before & Self.blocked != 0 {
                monitor.lock()
                monitor.broadcast()
                monitor.unlock()
            }
            return
        }
        monitor.lock()
        let before = state.subtract(1, ordering: .releasing).oldValue
        precondition(before & Self.readerMask > 0, "unlockShared on '\(name)' without a reader")
        if before & Self.readerMask == 1 { monitor.broadcast() }
        monitor.unlock()
    }

    public func lockExclusive(file: StaticString = #fileID, line: UInt = #line) {
        let site = SourceSite(file: file, line: line)
        domain.mightSleep(.sleepingLockAcquire, object: name, site: site)
        if let orderClass { orderClass.acquire(self, site: site) }
        monitor.lock(at: site)
        waitingWriters += 1
        // Set before the count is tested: a reader's fast path either got in
        // first (then it is counted) or fails its exchange and queues.
        state.bitwiseOr(Self.blocked, ordering: .acquiringAndReleasing)
        while writer || readers > 0 { monitor.wait(at: site) }
        waitingWriters -= 1
        writer = true
        writerThread.store(SpinLock.currentThread, ordering: .relaxed)
        monitor.unlock()
    }

    public func tryLockExclusive(file: StaticString = #fileID, line: UInt = #line) -> Bool {
        monitor.lock()
        guard !writer else {
            monitor.unlock()
            return false
        }
        state.bitwiseOr(Self.blocked, ordering: .acquiringAndReleasing)
        guard readers == 0 else {
            // Readers hold it: undo (readers that saw the bit meanwhile wait
            // on the monitor, which this holds, and find no writer).
            if waitingWriters == 0 { state.bitwiseAnd(~Self.blocked, ordering: .releasing) }
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
        if waitingWriters == 0 { state.bitwiseAnd(~Self.blocked, ordering: .releasing) }
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
