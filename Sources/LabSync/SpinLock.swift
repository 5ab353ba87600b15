import Synchronization

/// A lock that never sleeps: Linux's `spinlock_t`.
///
/// Holding it makes the thread non-blockable, exactly as `spin_lock`
/// disables preemption: a sleep, a wait or a sleeping-lock acquisition while
/// a spin lock is held is a context violation. Critical sections under it
/// must be short and must not call out to code that may sleep.
public final class SpinLock: Sendable, SectionSubject {
    public let name: String
    private let domain: SyncDomain
    private let held = Atomic<Bool>(false)
    /// The domain's scheduler decides every interleaving: taking and
    /// releasing are scheduling points (copied here so the free-running
    /// path pays one predictable branch on a field it already reads).
    private let controlled: Bool

    public var sectionSubjectName: String { name }

    public init(_ name: String, domain: SyncDomain) {
        self.name = name
        self.domain = domain
        controlled = domain.isControlled
    }

    /// Acquires the lock, spinning (never sleeping) while it is held elsewhere.
    public func lock(file: StaticString = #fileID, line: UInt = #line) {
        let site = SourceSite(file: file, line: line)
        ExecutionContext.enterCurrentNonBlockable(NonBlockableSection(reason: "spin lock", subject: self, site: site))
        if controlled { return lockControlled(site) }
        var attempt = 0
        while true {
            if !held.load(ordering: .relaxed),
                held.compareExchange(expected: false, desired: true, ordering: .acquiring).exchanged
            {
                return
            }
            domain.scheduler.spinWait(attempt: attempt)
            attempt += 1
        }
    }

    /// Under a controlled scheduler: a point before the first attempt, and
    /// every failed attempt is a spin (the scheduler runs the holder).
    private func lockControlled(_ site: SourceSite) {
        domain.scheduler.schedulingPoint(.spinLock, object: name, site: site)
        while !held.compareExchange(expected: false, desired: true, ordering: .acquiring).exchanged {
            domain.scheduler.schedulingPoint(.spin, object: name, site: site)
        }
    }

    /// Acquires the lock if it is free now.
    public func tryLock(file: StaticString = #fileID, line: UInt = #line) -> Bool {
        let site = SourceSite(file: file, line: line)
        if controlled { domain.scheduler.schedulingPoint(.spinTryLock, object: name, site: site) }
        guard held.compareExchange(expected: false, desired: true, ordering: .acquiring).exchanged else {
            return false
        }
        ExecutionContext.enterCurrentNonBlockable(NonBlockableSection(reason: "spin lock", subject: self, site: site))
        return true
    }

    public func unlock(file: StaticString = #fileID, line: UInt = #line) {
        held.store(false, ordering: .releasing)
        ExecutionContext.exitCurrentNonBlockable()
        if controlled { domain.scheduler.schedulingPoint(.spinUnlock, object: name, site: SourceSite(file: file, line: line)) }
    }

    /// Runs `body` with the lock held (and the thread non-blockable).
    @inlinable
    public func withLock<R, E: Error>(file: StaticString = #fileID, line: UInt = #line, _ body: () throws(E) -> R) throws(E) -> R {
        lock(file: file, line: line)
        defer { unlock() }
        return try body()
    }
}
