/// The host's synchronisation layer: one scheduler and one record of context
/// violations, shared by every primitive made from it.
///
/// Everything in the lab that can block holds a reference to a domain, never
/// to a global: two labs in one process (two tests in parallel, say) do not
/// see each other's violations.
public final class SyncDomain: Sendable {
    /// Who decides which thread runs: the operating system
    /// (`FreeRunningScheduler`) or a seed (`ControlledScheduler`).
    public let scheduler: any Scheduler
    /// Whether `scheduler` decides every interleaving (read once: the
    /// primitives branch on it instead of calling through the protocol).
    public let isControlled: Bool
    /// `scheduler` when it is LabSync's own controlled scheduler: the
    /// primitives call its scheduling points directly (a concrete class,
    /// no existential copied and released on every lock and unlock).
    let controlledScheduler: ControlledScheduler?
    /// Every sleep attempted where sleeping is forbidden.
    public let contextViolations: ReportLog<ContextViolation>
    /// The lock-order validator (lockdep), when `lockOrder` was asked for:
    /// locks made from this domain with an `orderClass` report to it.
    /// nil costs the primitives one branch on a field they already have.
    public let lockOrder: LockOrderValidator?

    public init(scheduler: any Scheduler = FreeRunningScheduler(), violationCapacity: Int = 10_000, lockOrder: Bool = false) {
        self.scheduler = scheduler
        self.isControlled = scheduler.isControlled
        self.controlledScheduler = scheduler as? ControlledScheduler
        self.contextViolations = ReportLog(capacity: violationCapacity)
        self.lockOrder = lockOrder ? LockOrderValidator() : nil
    }

    /// The lock class called `name`, if lock order is validated (the
    /// primitives' `orderClass:` goes through this).
    func orderClass(_ name: String?) -> LockOrderHook? {
        guard let name, let lockOrder, let made = lockOrder.lockClass(named: name) else { return nil }
        return LockOrderHook(made)
    }

    /// Runs `body` in reclaim context (Linux: `PF_MEMALLOC` and, for
    /// lockdep, the `fs_reclaim` map held): allocators serve only from
    /// their reserve, and every lock taken inside comes after `reclaim` in
    /// the lock order.
    public func withReclaim<R>(file: StaticString = #fileID, line: UInt = #line, _ body: () -> R) -> R {
        let context = ExecutionContext.current
        guard let lockOrder else { return context.withReclaimContext(body) }
        let token = UnsafeRawPointer(bitPattern: 0x7ec1_a1a1)!
        let outermost = !context.isInReclaim
        if outermost { lockOrder.acquire(lockOrder.reclaimHook, instance: token, site: SourceSite(file: file, line: line), trylock: false) }
        defer { if outermost { lockOrder.release(instance: token) } }
        return context.withReclaimContext(body)
    }

    /// An allocation that may reclaim is about to happen (Linux:
    /// `might_alloc`): for lockdep, every lock held now comes before reclaim.
    @inline(__always)
    public func mightReclaim(file: StaticString = #fileID, line: UInt = #line) {
        lockOrder?.mightReclaim(site: SourceSite(file: file, line: line))
    }

    /// The check every sleeping operation makes first, like the kernel's
    /// `might_sleep()`: inside a non-blockable section the attempt is
    /// recorded as a context violation. The operation then goes ahead, as in
    /// the kernel, which warns and continues.
    ///
    /// Returns whether a violation was recorded.
    @discardableResult
    public func mightSleep(_ operation: SleepingOperation, object: String = "", site: SourceSite) -> Bool {
        guard ExecutionContext.isCurrentNonBlockable else { return false }
        let context = ExecutionContext.current
        guard let section = context.innermostSection else { return false }
        var violation = ContextViolation(
            operation: operation,
            object: object,
            site: site,
            context: section.described,
            depth: context.nonBlockableDepth,
            thread: context.thread
        )
        violation.callee = context.currentCallee
        contextViolations.record(violation)
        return true
    }

    /// Sleeps for `duration`. A sleep inside a non-blockable section is a
    /// context violation.
    public func sleep(for duration: Duration, file: StaticString = #fileID, line: UInt = #line) {
        let site = SourceSite(file: file, line: line)
        mightSleep(.sleep, site: site)
        scheduler.sleep(for: duration)
    }

    /// Starts a named thread through the scheduler.
    public func spawnThread(named name: String, _ body: @escaping @Sendable () -> Void) -> any ThreadHandle {
        scheduler.spawn(name: name, body)
    }

    /// Lets another thread run (`sched_yield`); never sleeps, so it is
    /// allowed anywhere. Every loop that waits on an atomic for another
    /// thread must call it (or sleep): under a controlled scheduler nothing
    /// else would let that thread run.
    public func yield() { scheduler.yield() }

    /// A point where a controlled scheduler may run another thread first
    /// (nothing when free-running, where the operating system preempts).
    /// A loop that may go round without any other primitive of this layer
    /// (a workload whose device access takes no host lock, say) calls it
    /// once a round: a controlled scheduler cannot preempt a thread that
    /// never calls in, and everyone else would wait for ever.
    @inline(__always)
    public func preemptionPoint(file: StaticString = #fileID, line: UInt = #line) {
        guard isControlled else { return }
        let site = SourceSite(file: file, line: line)
        if let controlledScheduler {
            controlledScheduler.point(.preemption, object: ControlledScheduler.emptyNameHash, name: "", site: site)
        } else {
            scheduler.schedulingPoint(.preemption, object: "", site: site)
        }
    }

    /// Monotonic time from the scheduler (virtual under a controlled one).
    /// The lab reads no other clock.
    public func now() -> Duration { scheduler.now() }

    /// `now()` in whole nanoseconds (the scheduler's clock, read without `Duration` arithmetic).
    public func nowNanoseconds() -> UInt64 { scheduler.nowNanoseconds() }

    /// A number naming the calling thread (see `Scheduler.currentThreadID`).
    public var currentThreadID: UInt64 { scheduler.currentThreadID() }

    /// The scheduling step the run has reached (nil when free-running).
    public var currentStep: UInt64? { isControlled ? scheduler.currentStep() : nil }

    /// Whether the calling thread is one the scheduler made (always true
    /// when free-running).
    public var schedulesCurrentThread: Bool { isControlled ? scheduler.schedulesCurrentThread() : true }
}
