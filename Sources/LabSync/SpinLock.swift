import Synchronization

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// A lock that never sleeps: Linux's `spinlock_t`.
///
/// Holding it makes the thread non-blockable, exactly as `spin_lock`
/// disables preemption: a sleep, a wait or a sleeping-lock acquisition while
/// a spin lock is held is a context violation. Critical sections under it
/// must be short and must not call out to code that may sleep.
///
/// It knows its holder: `unlock` by any other thread is a bug in the caller
/// and stops the process (the host's own invariant; a plugin's unlock is
/// checked by the host before it gets here). With an `orderClass`, and a
/// domain that validates lock order, every acquisition is checked against
/// the order seen so far (`LockOrderValidator`).
public final class SpinLock: Sendable, SectionSubject {
    public let name: String
    private let domain: SyncDomain
    private let held = Atomic<Bool>(false)
    /// The holder's `pthread_self`, 0 while free.
    private let owner = Atomic<UInt>(0)
    /// Its lock class's hook (no reference counting on a path every thread shares).
    private let orderClass: LockOrderHook?
    /// The domain's scheduler decides every interleaving: taking and
    /// releasing are scheduling points (copied here so the free-running
    /// path pays one predictable branch on a field it already reads).
    private let controlled: Bool
    /// The domain's scheduler, when it is a `ControlledScheduler`, and the
    /// lock's name hashed once for its scheduling points (a trace's object).
    /// Unmanaged, so a scheduling point costs no reference counting: the
    /// lock holds `domain` and the domain holds its scheduler for good, so
    /// the scheduler outlives the lock.
    private let controlledScheduler: Unmanaged<ControlledScheduler>?
    private let nameHash: UInt32

    public var sectionSubjectName: String { name }

    /// `orderClass`: the lock's class for lock-order validation (every
    /// address space's page-table lock is one class); nil: not validated.
    public init(_ name: String, domain: SyncDomain, orderClass: String? = nil) {
        self.name = name
        self.domain = domain
        self.orderClass = domain.orderClass(orderClass)
        controlled = domain.isControlled
        controlledScheduler = domain.controlledScheduler.map { Unmanaged.passUnretained($0) }
        nameHash = ControlledScheduler.nameHash(name)
    }

    /// Acquires the lock, spinning (never sleeping) while it is held elsewhere.
    public func lock(file: StaticString = #fileID, line: UInt = #line) {
        let site = SourceSite(file: file, line: line)
        ExecutionContext.enterCurrentNonBlockable(NonBlockableSection(reason: "spin lock", subject: self, site: site))
        // Before spinning: an inversion is reported before it can deadlock.
        if let orderClass { orderClass.acquire(self, site: site) }
        if controlled { return lockControlled(site) }
        var attempt = 0
        while true {
            if !held.load(ordering: .relaxed),
                held.compareExchange(expected: false, desired: true, ordering: .acquiring).exchanged
            {
                owner.store(Self.currentThread, ordering: .relaxed)
                return
            }
            domain.scheduler.spinWait(attempt: attempt)
            attempt += 1
        }
    }

    /// Under a controlled scheduler: a point before the first attempt, and
    /// every failed attempt is a spin (the scheduler runs the holder).
    private func lockControlled(_ site: SourceSite) {
        schedulingPoint(.spinLock, site: site)
        while !held.compareExchange(expected: false, desired: true, ordering: .acquiring).exchanged {
            schedulingPoint(.spin, site: site)
        }
        owner.store(Self.currentThread, ordering: .relaxed)
    }

    /// A scheduling point of this lock (the domain is controlled).
    @inline(__always)
    private func schedulingPoint(_ kind: SchedulingPointKind, site: SourceSite) {
        if let controlledScheduler {
            controlledScheduler._withUnsafeGuaranteedRef { $0.point(kind, object: nameHash, name: name, site: site) }
        } else {
            domain.scheduler.schedulingPoint(kind, object: name, site: site)
        }
    }

    /// Acquires the lock if it is free now.
    public func tryLock(file: StaticString = #fileID, line: UInt = #line) -> Bool {
        let site = SourceSite(file: file, line: line)
        if controlled { schedulingPoint(.spinTryLock, site: site) }
        guard held.compareExchange(expected: false, desired: true, ordering: .acquiring).exchanged else {
            return false
        }
        owner.store(Self.currentThread, ordering: .relaxed)
        ExecutionContext.enterCurrentNonBlockable(NonBlockableSection(reason: "spin lock", subject: self, site: site))
        if let orderClass { orderClass.acquire(self, site: site, trylock: true) }
        return true
    }

    /// Releases the lock. Only its holder may: anything else stops the process.
    public func unlock(file: StaticString = #fileID, line: UInt = #line) {
        precondition(owner.load(ordering: .relaxed) == Self.currentThread, "unlock of spin lock '\(name)' by a thread that does not hold it")
        owner.store(0, ordering: .relaxed)
        if let orderClass { orderClass.release(self) }
        held.store(false, ordering: .releasing)
        ExecutionContext.exitCurrentNonBlockable()
        if controlled { schedulingPoint(.spinUnlock, site: SourceSite(file: file, line: line)) }
    }

    /// Whether the calling thread holds the lock.
    public var isHeldByCurrentThread: Bool { owner.load(ordering: .relaxed) == Self.currentThread }

    /// Whether any thread holds the lock now (a snapshot).
    public var isLocked: Bool { held.load(ordering: .relaxed) }

    /// Stops the process in debug builds if the calling thread does not hold
    /// the lock (Linux: `lockdep_assert_held`): for code documented as
    /// "called with the lock held".
    @inline(__always)
    public func assertHeld(file: StaticString = #fileID, line: UInt = #line) {
        assert(isHeldByCurrentThread, "'\(name)' must be held here", file: file, line: line)
    }

    /// Runs `body` with the lock held (and the thread non-blockable).
    @inlinable
    public func withLock<R, E: Error>(file: StaticString = #fileID, line: UInt = #line, _ body: () throws(E) -> R) throws(E) -> R {
        lock(file: file, line: line)
        defer { unlock() }
        return try body()
    }

    /// The calling thread, as a word (`pthread_self`: a load from the thread pointer).
    @inline(__always)
    static var currentThread: UInt { pthread_self() }
}
