import LabSync
import Synchronization

/// The device side of an interval subscription (Linux:
/// `mmu_interval_notifier_ops`).
public protocol IntervalInvalidator: AnyObject, Sendable {
    /// Shown in reports.
    var intervalName: String { get }
    /// The device the interval belongs to (see `AddressSpaceSubscriber.device`).
    var device: DeviceID? { get }

    /// An invalidation overlaps the interval. The device must take the lock
    /// that its fault path holds around `readRetry`, call
    /// `interval.setSeq(currentSeq)`, stop using translations in the
    /// overlap, and return true.
    ///
    /// For a non-blockable range it runs in a non-blockable section; if it
    /// would have to sleep it returns false (the caller retries later).
    /// Returning false for a blockable range is a contract violation.
    func invalidate(_ interval: IntervalNotifier, range: InvalidationRange, currentSeq: UInt64) -> Bool
}

extension IntervalInvalidator {
    public var intervalName: String { String(describing: type(of: self)) }
    public var device: DeviceID? { nil }
}

/// An interval's device side, boxed so that a dispatch can call it
/// through an unretained reference: `ops` is a `let`, so while the box is
/// alive it cannot change or go, and the call borrows it.
final class IntervalOps: Sendable {
    let ops: any IntervalInvalidator
    init(_ ops: any IntervalInvalidator) { self.ops = ops }
}

/// One interval subscription: a device's interest in `[start, end)` of one
/// address space (Linux: `struct mmu_interval_notifier`).
///
/// The device fault path uses the sequence count to detect that an
/// invalidation raced with it:
///
///     repeat {
///         let seq = interval.readBegin()      // may sleep while invalidated
///         fault the pages in (primary MMU)
///         device.lock()
///         if interval.readRetry(seq) { device.unlock(); continue }
///         install translations
///         device.unlock()
///     }
///
/// and the invalidate callback takes the same device lock and calls
/// `setSeq(currentSeq)` before zapping, so a fault that read the primary
/// tables before the zap cannot install a stale translation after it.
public final class IntervalNotifier: @unchecked Sendable {
    // @unchecked: `opsBox` is written only under the owner's lock while no
    // invalidation is active, and read only while one is (the owner's
    // deferral guarantees the two never overlap). `seq` is atomic.

    public let start: UInt64
    public let end: UInt64
    /// The address space it watches.
    public let owner: AddressSpaceNotifiers
    let handle: UInt32
    /// The device side, retained by hand: from `init` until `detachOps`
    /// (or deinit). `detachOps` runs only under the owner's lock with no
    /// invalidation active (see `AddressSpaceNotifiers.forget`), so a
    /// dispatch, counted in the owner's active invalidations, may call it
    /// unretained (`withOps`).
    private var opsBox: Unmanaged<IntervalOps>?
    let seq: Atomic<UInt64>

    init(start: UInt64, end: UInt64, owner: AddressSpaceNotifiers, handle: UInt32, ops: any IntervalInvalidator, seq: UInt64) {
        self.start = start
        self.end = end
        self.owner = owner
        self.handle = handle
        self.opsBox = .passRetained(IntervalOps(ops))
        assert(seq & 1 == 1, "an interval's sequence is always odd, not \(seq)")
        self.seq = Atomic(seq)
    }

    deinit { opsBox?.release() }

    /// Calls `body` with the device side, borrowed; nil once detached.
    /// Only from a dispatch counted in the owner's active invalidations.
    @inline(__always)
    func withOps<R>(_ body: (any IntervalInvalidator) -> R) -> R? {
        guard let opsBox else { return nil }
        return opsBox._withUnsafeGuaranteedRef { body($0.ops) }
    }

    /// Takes the device side away (owner's lock held, no invalidation
    /// active) and returns it, for the caller to release outside the lock.
    func detachOps() -> (any IntervalInvalidator)? {
        guard let box = opsBox else { return nil }
        opsBox = nil
        return box.takeRetainedValue().ops
    }

    /// Linux: `mmu_interval_read_begin`. Returns the sequence to pass to
    /// `readRetry`. If an invalidation overlapping this interval is in
    /// progress, sleeps until every active invalidation of the address space
    /// has ended (so it may not be called in a non-blockable section).
    public func readBegin(file: StaticString = #fileID, line: UInt = #line) -> UInt64 {
        let site = SourceSite(file: file, line: line)
        return owner.readBegin(self, site: site)
    }

    /// Linux: `mmu_interval_read_retry`. True if an invalidation touched the
    /// interval since `readBegin` returned `seq`. Call it under the same
    /// device lock the invalidate callback takes.
    @inlinable
    public func readRetry(_ seq: UInt64) -> Bool {
        currentSeq != seq
    }

    /// Linux: `mmu_interval_check_retry`: the same test, usable without the
    /// device lock as an early hint.
    @inlinable
    public func checkRetry(_ seq: UInt64) -> Bool { readRetry(seq) }

    /// Linux: `mmu_interval_set_seq`. Call from the invalidate callback,
    /// under the device lock, with the `currentSeq` it was given.
    public func setSeq(_ seq: UInt64) {
        assert(seq & 1 == 1, "setSeq(\(seq)): the sequence of an invalidation in progress is odd")
        self.seq.store(seq, ordering: .releasing)
    }

    @usableFromInline
    var currentSeq: UInt64 { seq.load(ordering: .acquiring) }
}
