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
    /// Unowned and unsafe: the validator keeps its classes, the domain keeps
    /// the validator, and every lock keeps its domain (and no reference
    /// counting on a lock's path, whose objects every thread shares).
    public unowned(unsafe) let validator: LockOrderValidator

    private static let nextID = Atomic<UInt32>(1)

    init(name: String, isPseudo: Bool, validator: LockOrderValidator) {
        id = Self.nextID.add(1, ordering: .relaxed).oldValue
        self.name = name
        self.isPseudo = isPseudo
        self.validator = validator
    }

    public var description: String { name }
}

/// How a lock with a class reaches the validator: trivially copyable
/// (unmanaged references, no reference counting), so the hot path of a lock
/// that every thread shares never touches a shared reference count. The
/// class and the validator outlive every lock made with them (the domain
/// keeps the validator, the validator its classes, each lock its domain).
public struct LockOrderHook: @unchecked Sendable {
    // @unchecked: immutable; the references are kept alive as said above.
    let validator: Unmanaged<LockOrderValidator>
    let lockClass: Unmanaged<LockClass>
    let id: UInt32

    public init(_ lockClass: LockClass) {
        self.lockClass = .passUnretained(lockClass)
        validator = .passUnretained(lockClass.validator)
        id = lockClass.id
    }

    /// The calling thread is about to take (or, with `trylock`, has taken)
    /// the lock `instance` of this class.
    @inline(__always)
    public func acquire(_ instance: AnyObject, site: SourceSite, trylock: Bool = false) {
        let pointer = UnsafeRawPointer(Unmanaged.passUnretained(instance).toOpaque())
        validator._withUnsafeGuaranteedRef { $0.acquire(self, instance: pointer, site: site, trylock: trylock) }
    }

    /// The calling thread released the lock `instance`.
    @inline(__always)
    public func release(_ instance: AnyObject) {
        let pointer = UnsafeRawPointer(Unmanaged.passUnretained(instance).toOpaque())
        validator._withUnsafeGuaranteedRef { $0.release(instance: pointer) }
    }

    var validatorKey: UnsafeMutableRawPointer { validator.toOpaque() }
}

/// A lock the calling thread holds, as the validator records it
/// (trivially copyable).
struct HeldLock {
    let hook: LockOrderHook
    /// The lock instance (its object's address): releases match on it.
    let instance: UnsafeRawPointer
    let site: SourceSite
    /// Whose code took it (a plugin's callback), if the host said so.
    let callee: CalleeFrame?

    var name: String { hook.lockClass._withUnsafeGuaranteedRef { $0.name } }
}

/// The validator's per-thread state: the locks held, in order (a fixed
/// array: no reference counting, no exclusivity checks), and a
/// direct-mapped cache of edges already in the graph, so a lock taken in an
/// order seen before costs a few loads and no lock.
final class LockOrderThread {
    static let capacity = 64
    static let cacheSlots = 1_024
    let held: UnsafeMutablePointer<HeldLock>
    /// Locks held, of all validators (entries past `capacity` are counted, not kept).
    @exclusivity(unchecked) var count = 0
    private let cache: UnsafeMutablePointer<UInt64>

    init() {
        held = .allocate(capacity: Self.capacity)
        cache = .allocate(capacity: Self.cacheSlots)
        cache.initialize(repeating: 0, count: Self.cacheSlots)
    }

    deinit {
        held.deallocate()
        cache.deallocate()
    }

    /// The kept entries.
    var kept: UnsafeMutableBufferPointer<HeldLock> { UnsafeMutableBufferPointer(start: held, count: min(count, Self.capacity)) }

    @inline(__always)
    func push(_ entry: HeldLock) {
        if count < Self.capacity { (held + count).initialize(to: entry) }
        count += 1
    }

    /// Removes the latest entry for `instance`; false if none is kept.
    @inline(__always)
    func remove(_ instance: UnsafeRawPointer) -> Bool {
        var index = min(count, Self.capacity)
        while index > 0 {
            index -= 1
            guard held[index].instance == instance else { continue }
            let last = min(count, Self.capacity) - 1
            if index < last { (held + index).update(from: held + index + 1, count: last - index) }
            count -= 1
            return true
        }
        if count > Self.capacity {
            count -= 1  // one of those not kept
            return true
        }
        return false
    }

    @inline(__always)
    static func key(_ from: UInt32, _ to: UInt32) -> UInt64 { UInt64(from) << 32 | UInt64(to) }

    @inline(__always)
    private func slot(_ key: UInt64) -> Int { Int(truncatingIfNeeded: (key &* 0x9E37_79B9_7F4A_7C15) >> 54) }

    @inline(__always)
    func knows(_ key: UInt64) -> Bool { cache[slot(key)] == key }

    @inline(__always)
    func remember(_ key: UInt64) { cache[slot(key)] = key }
}
