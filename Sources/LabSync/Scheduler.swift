/// The seam through which every wait, wake-up, sleep and thread start of the
/// lab passes.
///
/// The free-running scheduler (`FreeRunningScheduler`) maps these onto real
/// threads, mutexes and condition variables. A controlled scheduler can later
/// implement the same protocol to run every actor one at a time, choosing who
/// runs next at each of these points from a seed, so a failure replays
/// exactly. For that to work nothing in the core may block any other way:
/// the primitives of this module (`SleepingLock`, `SpinLock`, `WaitQueue`,
/// `Completion`, `SyncDomain.sleep`) are built only on what this protocol
/// offers, and a test checks that no other module reaches for a raw lock.
public protocol Scheduler: Sendable {
    /// A new mutex-and-condition pair owned by this scheduler.
    func makeMonitor() -> any Monitor

    /// Starts a thread running `body`. The thread is named for reports.
    func spawn(name: String, _ body: @escaping @Sendable () -> Void) -> any ThreadHandle

    /// Blocks the calling thread for `duration` (real or virtual time).
    func sleep(for duration: Duration)

    /// Called by a thread that found a spin lock held, `attempt` times in a row.
    /// Must not sleep; may let another thread run.
    func spinWait(attempt: Int)

    /// Monotonic time since an arbitrary, fixed origin.
    func now() -> Duration
}

/// A mutex with one condition variable, as a scheduler provides it.
///
/// `wait` and `wait(timeout:)` are called with the mutex held and return
/// with it held; wake-ups may be spurious, so callers re-check their
/// condition in a loop.
public protocol Monitor: AnyObject, Sendable {
    func lock()
    func tryLock() -> Bool
    func unlock()
    func wait()
    /// Returns false when `timeout` elapsed without a wake-up.
    func wait(timeout: Duration) -> Bool
    func signal()
    func broadcast()
}

/// A started thread.
public protocol ThreadHandle: AnyObject, Sendable {
    /// Blocks until the thread has finished.
    func join()
}
