/// A reader-writer lock whose waiters sleep: Linux's `rw_semaphore`
/// (`mmap_lock`, `anon_vma->rwsem`, `i_mmap_rwsem`).
///
/// Many readers or one writer. A waiting writer holds new readers back, so
/// a stream of readers cannot starve it. Acquiring may sleep: inside a
/// non-blockable section it is a context violation. The `try` forms never
/// sleep.
public final class SleepingRWLock: @unchecked Sendable {
    // @unchecked: the counters are only touched with `monitor` held.
    public let name: String
    private let domain: SyncDomain
    private let monitor: any Monitor
    private var readers = 0
    private var writer = false
    private var waitingWriters = 0

    public init(_ name: String, domain: SyncDomain) {
        self.name = name
        self.domain = domain
        self.monitor = domain.scheduler.makeMonitor(named: name)
    }

    public func lockShared(file: StaticString = #fileID, line: UInt = #line) {
        let site = SourceSite(file: file, line: line)
        domain.mightSleep(.sleepingLockAcquire, object: name, site: site)
        monitor.lock(at: site)
        while writer || waitingWriters > 0 { monitor.wait(at: site) }
        readers += 1
        monitor.unlock()
    }

    public func tryLockShared() -> Bool {
        monitor.lock()
        defer { monitor.unlock() }
        guard !writer && waitingWriters == 0 else { return false }
        readers += 1
        return true
    }

    public func unlockShared() {
        monitor.lock()
        precondition(readers > 0, "unlockShared on '\(name)' without a reader")
        readers -= 1
        if readers == 0 { monitor.broadcast() }
        monitor.unlock()
    }

    public func lockExclusive(file: StaticString = #fileID, line: UInt = #line) {
        let site = SourceSite(file: file, line: line)
        domain.mightSleep(.sleepingLockAcquire, object: name, site: site)
        monitor.lock(at: site)
        waitingWriters += 1
        while writer || readers > 0 { monitor.wait(at: site) }
        waitingWriters -= 1
        writer = true
        monitor.unlock()
    }

    public func tryLockExclusive() -> Bool {
        monitor.lock()
        defer { monitor.unlock() }
        guard !writer && readers == 0 else { return false }
        writer = true
        return true
    }

    public func unlockExclusive() {
        monitor.lock()
        precondition(writer, "unlockExclusive on '\(name)' without the writer")
        writer = false
        monitor.broadcast()
        monitor.unlock()
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
