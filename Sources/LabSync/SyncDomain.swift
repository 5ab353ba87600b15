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
    /// Every sleep attempted where sleeping is forbidden.
    public let contextViolations: ReportLog<ContextViolation>

    public init(scheduler: any Scheduler = FreeRunningScheduler(), violationCapacity: Int = 10_000) {
        self.scheduler = scheduler
        self.isControlled = scheduler.isControlled
        self.contextViolations = ReportLog(capacity: violationCapacity)
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
        if isControlled { scheduler.schedulingPoint(.preemption, object: "", site: SourceSite(file: file, line: line)) }
    }

    /// Monotonic time from the scheduler (virtual under a controlled one).
    /// The lab reads no other clock.
    public func now() -> Duration { scheduler.now() }

    /// A number naming the calling thread (see `Scheduler.currentThreadID`).
    public var currentThreadID: UInt64 { scheduler.currentThreadID() }

    /// The scheduling step the run has reached (nil when free-running).
    public var currentStep: UInt64? { isControlled ? scheduler.currentStep() : nil }

    /// Whether the calling thread is one the scheduler made (always true
    /// when free-running).
    public var schedulesCurrentThread: Bool { isControlled ? scheduler.schedulesCurrentThread() : true }
}
