import Synchronization

/// A class of locks, as Linux's lockdep has them: every lock made with the
/// same class name is one node of the lock-order graph (every address
/// space's page-table lock is `page_table_lock`), so an order seen on one
/// instance teaches the validator about all of them.
///
/// Made by `LockOrderValidator.lockClass(named:)`; a primitive that has one
/// reports its acquisitions and releases to that validator.
public final class LockClass: Sendable, CustomStringConvertible {
    /// Unique in the process (so a thread that holds locks of two domains
    /// never mixes their edges up).
    public let id: UInt32
    public let name: String
    /// A pseudo-lock (reclaim, a notifier grace period): never really
    /// taken, it stands for a wait that can deadlock like a lock.
    public let isPseudo: Bool
    public unowned let validator: LockOrderValidator

    private static let nextID = Atomic<UInt32>(1)

    init(name: String, isPseudo: Bool, validator: LockOrderValidator) {
        id = Self.nextID.add(1, ordering: .relaxed).oldValue
        self.name = name
        self.isPseudo = isPseudo
        self.validator = validator
    }

    public var description: String { name }
}

/// A lock the calling thread holds, as the validator records it.
struct HeldLock {
    unowned(unsafe) let lockClass: LockClass
    /// The lock instance (its object's address): releases match on it.
    let instance: UnsafeRawPointer
    let site: SourceSite
    /// Whose code took it (a plugin's callback), if the host said so.
    let callee: CalleeFrame?
}

/// The validator's per-thread state: the locks held, in order, and a
/// direct-mapped cache of edges already in the graph, so a lock taken in an
/// order seen before costs a few loads and no lock.
final class LockOrderThread {
    var held: [HeldLock] = []
    private let cache: UnsafeMutablePointer<UInt64>
    static let cacheSlots = 1_024

    init() {
        held.reserveCapacity(16)
        cache = .allocate(capacity: Self.cacheSlots)
        cache.initialize(repeating: 0, count: Self.cacheSlots)
    }

    deinit { cache.deallocate() }

    @inline(__always)
    static func key(_ from: UInt32, _ to: UInt32) -> UInt64 { UInt64(from) << 32 | UInt64(to) }

    @inline(__always)
    private func slot(_ key: UInt64) -> Int { Int(truncatingIfNeeded: (key &* 0x9E37_79B9_7F4A_7C15) >> 54) }

    @inline(__always)
    func knows(_ key: UInt64) -> Bool { cache[slot(key)] == key }

    @inline(__always)
    func remember(_ key: UInt64) { cache[slot(key)] = key }
}
