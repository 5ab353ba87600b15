#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif
import CLabSyncShims

/// The real-thread scheduler: every actor is a POSIX thread, every monitor a
/// `pthread_mutex_t` with a `pthread_cond_t` on the monotonic clock, and the
/// operating system decides who runs.
///
/// This is the only place in the lab that calls pthread locking functions
/// (besides `ReportLog`'s private mutex).
public struct FreeRunningScheduler: Scheduler {
    public init() {}

    public func makeMonitor() -> any Monitor { PthreadMonitor() }

    public func spawn(name: String, _ body: @escaping @Sendable () -> Void) -> any ThreadHandle {
        PthreadThread(name: name, body: body)
    }

    public func sleep(for duration: Duration) {
        var request = timespec(duration)
        var remaining = timespec()
        while nanosleep(&request, &remaining) != 0 && errno == EINTR {
            request = remaining
        }
    }

    public func spinWait(attempt: Int) {
        // Spin briefly, then give the core away: with two cores and more
        // threads than cores, the holder may be preempted and pure spinning
        // would burn its time slice.
        if attempt < 64 {
            spinLoopHint()
        } else {
            sched_yield()
        }
    }

    public func yield() { sched_yield() }

    public func now() -> Duration {
        var ts = timespec()
        clock_gettime(CLOCK_MONOTONIC, &ts)
        return .seconds(ts.tv_sec) + .nanoseconds(ts.tv_nsec)
    }

    public func nowNanoseconds() -> UInt64 {
        var ts = timespec()
        clock_gettime(CLOCK_MONOTONIC, &ts)
        return UInt64(max(ts.tv_sec, 0)) &* 1_000_000_000 &+ UInt64(max(ts.tv_nsec, 0))
    }
}

@inline(__always)
private func spinLoopHint() {
    mmulab_cpu_relax()
}

extension timespec {
    init(_ duration: Duration) {
        let (seconds, attoseconds) = duration.components
        let clamped = max(seconds, 0)
        self.init(tv_sec: Int(clamped), tv_nsec: seconds < 0 ? 0 : Int(attoseconds / 1_000_000_000))
    }
}

/// A mutex and a monotonic-clock condition variable.
final class PthreadMonitor: Monitor, @unchecked Sendable {
    // @unchecked: the pthread objects are designed for concurrent use and
    // live at stable heap addresses for the monitor's lifetime.
    private let mutex = UnsafeMutablePointer<pthread_mutex_t>.allocate(capacity: 1)
    private let condition = UnsafeMutablePointer<pthread_cond_t>.allocate(capacity: 1)

    init() {
        pthread_mutex_init(mutex, nil)
        var attributes = pthread_condattr_t()
        pthread_condattr_init(&attributes)
        pthread_condattr_setclock(&attributes, CLOCK_MONOTONIC)
        pthread_cond_init(condition, &attributes)
        pthread_condattr_destroy(&attributes)
    }

    deinit {
        pthread_cond_destroy(condition)
        pthread_mutex_destroy(mutex)
        condition.deallocate()
        mutex.deallocate()
    }

    func lock() { pthread_mutex_lock(mutex) }
    // The site is for a controlled scheduler's reports; ignoring it here
    // keeps the free-running path exactly what it was.
    func lock(at site: SourceSite) { pthread_mutex_lock(mutex) }
    func tryLock() -> Bool { pthread_mutex_trylock(mutex) == 0 }
    func unlock() { pthread_mutex_unlock(mutex) }
    func wait() { pthread_cond_wait(condition, mutex) }
    func wait(at site: SourceSite) { pthread_cond_wait(condition, mutex) }
    func wait(timeout: Duration, at site: SourceSite) -> Bool { wait(timeout: timeout) }

    func wait(timeout: Duration) -> Bool {
        var now = timespec()
        clock_gettime(CLOCK_MONOTONIC, &now)
        let delta = timespec(timeout)
        var deadline = timespec(tv_sec: now.tv_sec + delta.tv_sec, tv_nsec: now.tv_nsec + delta.tv_nsec)
        if deadline.tv_nsec >= 1_000_000_000 {
            deadline.tv_sec += 1
            deadline.tv_nsec -= 1_000_000_000
        }
        return pthread_cond_timedwait(condition, mutex, &deadline) != ETIMEDOUT
    }

    func signal() { pthread_cond_signal(condition) }
    func broadcast() { pthread_cond_broadcast(condition) }
}

/// A joinable POSIX thread running a Swift closure.
final class PthreadThread: ThreadHandle, @unchecked Sendable {
    // @unchecked: `thread` is written once before init returns and read only by `join`.
    private var thread = pthread_t()
    private let joined = UnsafeMutablePointer<pthread_mutex_t>.allocate(capacity: 1)
    private var hasJoined = false

    private final class Start {
        let name: String
        let body: @Sendable () -> Void
        init(name: String, body: @escaping @Sendable () -> Void) {
            self.name = name
            self.body = body
        }
    }

    init(name: String, body: @escaping @Sendable () -> Void) {
        pthread_mutex_init(joined, nil)
        let start = Unmanaged.passRetained(Start(name: name, body: body)).toOpaque()
        let status = pthread_create(&thread, nil, { raw in
            let start = Unmanaged<Start>.fromOpaque(raw!).takeRetainedValue()
            ExecutionContext.current.setThreadName(start.name)
            mmulab_set_thread_name(start.name)
            start.body()
            return nil
        }, start)
        precondition(status == 0, "pthread_create failed: \(status)")
    }

    func join() {
        pthread_mutex_lock(joined)
        defer { pthread_mutex_unlock(joined) }
        guard !hasJoined else { return }
        pthread_join(thread, nil)
        hasJoined = true
    }

    deinit {
        if !hasJoined { pthread_detach(thread) }
        pthread_mutex_destroy(joined)
        joined.deallocate()
    }
}
