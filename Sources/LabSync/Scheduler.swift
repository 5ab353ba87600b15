/// The seam through which every wait, wake-up, sleep and thread start of the
/// lab passes.
///
/// The free-running scheduler (`FreeRunningScheduler`) maps these onto real
/// threads, mutexes and condition variables and lets the operating system
/// decide who runs. The controlled scheduler (`ControlledScheduler`) runs the
/// same real threads one at a time and chooses who runs next at each of these
/// points from a seed, on a virtual clock, so a run replays exactly. For that
/// to work nothing in the lab may block, sleep, start a thread or read the
/// clock any other way: the primitives of this module (`SleepingLock`,
/// `SleepingRWLock`, `SpinLock`, `WaitQueue`, `Completion`, `SyncDomain.sleep`,
/// `SyncDomain.spawnThread`, `SyncDomain.yield`, `SyncDomain.now`) are built
/// only on what this protocol offers, and `LayeringTests` checks that no other
/// module (and no plugin) reaches for a raw lock, thread, sleep or clock.
public protocol Scheduler: Sendable {
    /// A new mutex-and-condition pair owned by this scheduler.
    func makeMonitor() -> any Monitor

    /// The same, named for reports (a deadlock names what each thread waits on).
    func makeMonitor(named name: String) -> any Monitor

    /// Starts a thread running `body`. The thread is named for reports.
    func spawn(name: String, _ body: @escaping @Sendable () -> Void) -> any ThreadHandle

    /// Blocks the calling thread for `duration` (real or virtual time).
    func sleep(for duration: Duration)

    /// Called by a thread that found a spin lock held, `attempt` times in a row.
    /// Must not sleep; may let another thread run.
    func spinWait(attempt: Int)

    /// Lets another thread run; never sleeps (`sched_yield`). Spin loops on
    /// atomics call it, so a scheduler that runs one thread at a time can
    /// run the thread they wait for.
    func yield()

    /// A point where the running thread may hand over to another, before or
    /// after an operation that does not otherwise block (a spin lock taken
    /// or released). Only a scheduler whose `isControlled` is true is called.
    func schedulingPoint(_ kind: SchedulingPointKind, object: String, site: SourceSite)

    /// Monotonic time since an arbitrary, fixed origin.
    func now() -> Duration

    /// `now()` in whole nanoseconds (clamped at 0): the clock the lab reads
    /// on every device access, without `Duration`'s 128-bit arithmetic.
    func nowNanoseconds() -> UInt64

    /// Whether this scheduler decides every interleaving (and wants
    /// `schedulingPoint` calls). Read once, when a `SyncDomain` is made.
    var isControlled: Bool { get }

    /// Whether the calling thread is one this scheduler started (a thread
    /// made elsewhere, by `pthread_create` in a plugin say, escapes the
    /// schedule and makes a run irreproducible).
    func schedulesCurrentThread() -> Bool

    /// How many scheduling points have passed (nil: the scheduler does not count).
    func currentStep() -> UInt64?

    /// A number naming the calling thread, never 0, distinct among live
    /// threads; a controlled scheduler's are the same in every replay.
    func currentThreadID() -> UInt64

    /// What the thread of that name is doing now ("blocked in lock 'x' at
    /// file:line", "spinning on ...", "runnable"), if the scheduler knows
    /// (a watchdog report names it).
    func state(ofThreadNamed name: String) -> String?
}

extension Scheduler {
    public func nowNanoseconds() -> UInt64 {
        let elapsed = now().components
        return UInt64(max(elapsed.seconds, 0)) &* 1_000_000_000 &+ UInt64(max(elapsed.attoseconds, 0) / 1_000_000_000)
    }
    public func makeMonitor(named name: String) -> any Monitor { makeMonitor() }
    public func schedulingPoint(_ kind: SchedulingPointKind, object: String, site: SourceSite) {}
    public var isControlled: Bool { false }
    public func schedulesCurrentThread() -> Bool { true }
    public func currentStep() -> UInt64? { nil }
    public func currentThreadID() -> UInt64 { ExecutionContext.currentSerial }
    public func state(ofThreadNamed name: String) -> String? { nil }
}

/// What the running thread was doing at a scheduling point (a schedule trace
/// records it with the thread and the object).
public enum SchedulingPointKind: UInt8, Sendable, CaseIterable, CustomStringConvertible {
    case lock, tryLock, unlock, wait, timedWait, spinLock, spinTryLock, spinUnlock, spin, sleep, spawn, join, yield, start, exit
    /// A loop's turn (`SyncDomain.preemptionPoint`): the thread may be
    /// preempted, but waits for nothing.
    case preemption

    public var description: String {
        switch self {
        case .lock: "lock"
        case .tryLock: "trylock"
        case .unlock: "unlock"
        case .wait: "wait"
        case .timedWait: "timed wait"
        case .spinLock: "spin lock"
        case .spinTryLock: "spin trylock"
        case .spinUnlock: "spin unlock"
        case .spin: "spin"
        case .sleep: "sleep"
        case .spawn: "spawn"
        case .join: "join"
        case .yield: "yield"
        case .start: "start"
        case .exit: "exit"
        case .preemption: "preemption point"
        }
    }
}

/// A mutex with one condition variable, as a scheduler provides it.
///
/// `wait` and `wait(timeout:)` are called with the mutex held and return
/// with it held; wake-ups may be spurious, so callers re-check their
/// condition in a loop. The `at:` forms name the caller's source line, for
/// a controlled scheduler's deadlock reports; a free-running monitor ignores it.
public protocol Monitor: AnyObject, Sendable {
    func lock()
    func lock(at site: SourceSite)
    func tryLock() -> Bool
    func unlock()
    func wait()
    func wait(at site: SourceSite)
    /// Returns false when `timeout` elapsed without a wake-up.
    func wait(timeout: Duration) -> Bool
    func wait(timeout: Duration, at site: SourceSite) -> Bool
    func signal()
    func broadcast()
}

extension Monitor {
    public func lock(at site: SourceSite) { lock() }
    public func wait(at site: SourceSite) { wait() }
    public func wait(timeout: Duration, at site: SourceSite) -> Bool { wait(timeout: timeout) }
}

/// A started thread.
public protocol ThreadHandle: AnyObject, Sendable {
    /// Blocks until the thread has finished.
    func join()
}
