import CLabSyncShims

/// One thread of a controlled run: a real POSIX thread that runs only while
/// the scheduler has made it `current`, and otherwise waits on its own gate
/// (or, handing over in user space, has its context saved in `fiber` while
/// the run's carrier runs another).
///
/// Every mutable field is guarded by the scheduler's state mutex.
final class ScheduledThread: @unchecked Sendable {
    enum Status { case enabled, blocked, finished }

    /// Its place in the order threads were made: the name a schedule trace uses.
    let index: Int
    let name: String
    let scheduler: ControlledScheduler
    /// `scheduler`'s identity (compared at every point without loading the reference).
    let schedulerID: ObjectIdentifier
    /// `scheduler.mutex`'s state (tells the carrier apart: `StateLock`).
    let stateLock: UnsafeMutablePointer<mmulab_biased_lock>
    /// The word the thread waits on until it is current (`mmulab_gate_pass`;
    /// the thread that makes it current opens it, after letting go of the
    /// scheduler's mutex, so the woken thread does not wake into a held lock).
    let gate: UnsafeMutablePointer<UInt32>
    /// Its saved context and parked kernel thread when the run hands over in
    /// user space (`Configuration.handsOverInUserSpace`; unused otherwise).
    let fiber: UnsafeMutablePointer<mmulab_fiber>

    /// Blocked until `makeThread` enables it.
    var status: Status = .blocked
    /// What it is blocked on (or spinning on), for reports.
    var waitingFor: WaitSite? = nil
    /// The virtual time a timed block ends at (`UInt64.max`: none).
    var deadline: UInt64 = .max
    /// Set when a timed block ended by its deadline rather than a wake-up.
    var timedOut = false
    /// The monitor whose condition it waits on, if any (a timeout takes it off the list).
    var conditionOf: ControlledMonitor? = nil
    /// PCT priority: the highest enabled runs.
    var priority: Int64 = 0
    /// Its last scheduling point was a yield (a spin): it waits for another thread.
    var yielded = false
    /// The step at which it last became current.
    var runSince: UInt64 = 0
    /// Steps it ran since its priority last dropped (PCT's time slice
    /// counts these, across switches: a thread that runs a little between
    /// every other thread's turns still uses its slice up).
    var stepsSinceDrop: UInt64 = 0
    /// The kind and object of its last scheduling point (a decision's site).
    var lastKind: SchedulingPointKind = .start
    var lastObject: UInt32 = 0
    /// Threads blocked in `join` on it.
    var joiners: [ScheduledThread] = []
    /// Threads the scheduler did not make, waiting in `join` on it.
    var foreignJoiners = 0

    init(index: Int, name: String, scheduler: ControlledScheduler) {
        self.index = index
        self.name = name
        self.scheduler = scheduler
        schedulerID = ObjectIdentifier(scheduler)
        stateLock = scheduler.mutex.state
        gate = .allocate(capacity: 1)
        gate.initialize(to: 0)
        fiber = .allocate(capacity: 1)
        fiber.initialize(to: mmulab_fiber())
    }

    deinit {
        // A parked kernel thread holds its record (its start routine's
        // frame), so this runs only once none waits on the park stack.
        mmulab_fiber_free_park_stack(fiber)
        fiber.deallocate()
        gate.deallocate()
    }

    var isFinished: Bool { status == .finished }
}

/// The handle `spawn` returns: `join` goes through the scheduler.
final class ScheduledThreadHandle: ThreadHandle, @unchecked Sendable {
    // @unchecked: immutable.
    let thread: ScheduledThread
    init(_ thread: ScheduledThread) { self.thread = thread }
    func join() { thread.scheduler.join(thread) }
}

/// What a new thread runs: its record and body, handed to `pthread_create`.
final class ThreadStart {
    let thread: ScheduledThread
    let body: @Sendable () -> Void
    init(thread: ScheduledThread, body: @escaping @Sendable () -> Void) {
        self.thread = thread
        self.body = body
    }
}
