import LabSync
import Synchronization

/// A thread's last device accesses, so the run loop can tell, for a
/// violation the primary recorded on that thread, whether it was a read or
/// a write and when it began. One writer (the thread); the run loop reads.
/// The two words of an entry are separate atomics: a read racing the
/// thread's next write may pair an address with a neighbour's time, which
/// only blurs a time in a report.
final class AccessHistory: @unchecked Sendable {
    // @unchecked: the entries are atomics, allocated once.
    static let capacity = 1_024
    /// Per entry: the page address with bit 0 set for a write, then the start time.
    private let words: UnsafeMutablePointer<Atomic<UInt64>>
    private let next = Atomic<Int>(0)

    init() {
        words = .allocate(capacity: 2 * Self.capacity)
        for index in 0..<2 * Self.capacity { (words + index).initialize(to: Atomic(0)) }
    }

    deinit {
        words.deinitialize(count: 2 * Self.capacity)
        words.deallocate()
    }

    /// The thread begins a device access of the page at `address` (thread
    /// only); returns true once in 64 calls.
    @discardableResult
    func record(_ address: UInt64, write: Bool, at nanoseconds: UInt64) -> Bool {
        let slot = next.load(ordering: .relaxed)
        words[2 * slot + 1].store(nanoseconds, ordering: .relaxed)
        words[2 * slot].store(address & ~4095 | (write ? 1 : 0), ordering: .releasing)
        next.store((slot + 1) % Self.capacity, ordering: .relaxed)
        return slot % 64 == 0
    }

    /// The latest access of the page at `address` the history still holds
    /// (searched from the newest back, so a recent one is found at once).
    func latest(_ address: UInt64) -> (write: Bool, nanoseconds: UInt64)? {
        let page = address & ~4095
        let last = next.load(ordering: .acquiring)
        for step in 1...Self.capacity {
            let slot = (last - step + Self.capacity) % Self.capacity
            let word = words[2 * slot].load(ordering: .acquiring)
            if word != 0, word & ~4095 == page { return (word & 1 == 1, words[2 * slot + 1].load(ordering: .relaxed)) }
        }
        return nil
    }
}

/// Who a thread of the run is: the actor's name, the plugin instance whose
/// device it drives (if any) and the access path its device accesses are
/// reported under, so a violation the primary records on that thread
/// (which names only the thread) can be keyed to the instance.
struct ActorIdentity: Sendable {
    var name: String
    /// The plugin instance, as the run names it (`gpu#0`).
    var instance: String?
    /// `device access`, `attach-churn read`, `exit-release read`.
    var path: String
    var history: AccessHistory?
}

/// The run's threads by thread id (registered by each thread as it starts).
final class ActorRegistry: Sendable {
    private let byThread: SpinLocked<[Int32: ActorIdentity]>

    init(domain: SyncDomain) {
        byThread = SpinLocked([:], name: "actor registry", domain: domain)
    }

    /// The calling thread is `identity`.
    func registerCurrentThread(_ identity: ActorIdentity) {
        let tid = ThreadIdentity.current.tid
        byThread.withLock { $0[tid] = identity }
    }

    func identity(of thread: ThreadIdentity) -> ActorIdentity? { byThread.withLock { $0[thread.tid] } }
}
