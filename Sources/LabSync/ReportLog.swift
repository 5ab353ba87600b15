#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// An append-only, thread-safe record of findings (context violations,
/// contract violations), bounded so a storm of identical bugs cannot exhaust
/// memory: past `capacity` entries only the count grows.
///
/// It uses a raw mutex of its own rather than a `SleepingLock`: recording a
/// violation happens *inside* the contexts being checked, and must neither
/// recurse into the checks nor count as a sleep. The critical section is an
/// array append, so it never blocks for long.
public final class ReportLog<Entry: Sendable>: @unchecked Sendable {
    // @unchecked: `entries` and `total` are only touched with `mutex` held.
    private let mutex = UnsafeMutablePointer<pthread_mutex_t>.allocate(capacity: 1)
    private var entries: [Entry] = []
    private var total = 0
    /// How many entries are kept; later ones are counted only.
    public let capacity: Int

    public init(capacity: Int = 10_000) {
        precondition(capacity > 0)
        self.capacity = capacity
        pthread_mutex_init(mutex, nil)
    }

    deinit {
        pthread_mutex_destroy(mutex)
        mutex.deallocate()
    }

    /// Records one finding.
    public func record(_ entry: Entry) {
        pthread_mutex_lock(mutex)
        total += 1
        if entries.count < capacity { entries.append(entry) }
        pthread_mutex_unlock(mutex)
    }

    /// The kept entries, oldest first.
    public var snapshot: [Entry] {
        pthread_mutex_lock(mutex)
        defer { pthread_mutex_unlock(mutex) }
        return entries
    }

    /// How many findings were recorded, kept or not.
    public var count: Int {
        pthread_mutex_lock(mutex)
        defer { pthread_mutex_unlock(mutex) }
        return total
    }

    /// Forgets everything recorded so far and returns it.
    @discardableResult
    public func drain() -> [Entry] {
        pthread_mutex_lock(mutex)
        defer { pthread_mutex_unlock(mutex) }
        let drained = entries
        entries = []
        total = 0
        return drained
    }
}
