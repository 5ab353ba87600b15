public import CDevicePluginABI
import Synchronization

/// The range of an invalidation, read in place from the host's record
/// (valid only during the callback that received it). Fields are loaded on
/// use: a callback that does not look pays nothing.
public struct InvalidationRange {
    public let raw: UnsafePointer<mmulab_range>

    @inlinable public init(_ raw: UnsafePointer<mmulab_range>) { self.raw = raw }

    @inlinable public var addressSpace: UInt64 { raw.pointee.address_space }
    @inlinable public var start: UInt64 { raw.pointee.start }
    @inlinable public var end: UInt64 { raw.pointee.end }
    /// `mmulab_event` value.
    @inlinable public var event: UInt32 { raw.pointee.event }
    /// Whether the callee may sleep for this range.
    @inlinable public var isBlockable: Bool { raw.pointee.flags & UInt32(MMULAB_RANGE_BLOCKABLE) != 0 }
    /// Who started a migration, if anyone.
    @inlinable public var owner: UInt64? {
        raw.pointee.flags & UInt32(MMULAB_RANGE_HAS_OWNER) != 0 ? raw.pointee.owner : nil
    }
    /// Whether the range overlaps `[otherStart, otherEnd)`.
    @inlinable public func overlaps(_ otherStart: UInt64, _ otherEnd: UInt64) -> Bool { otherStart < end && start < otherEnd }
}

/// An interval subscription (the C `mmulab_interval_ops`): subclass it and
/// override `invalidate`. The subscription object is the handle for the
/// sequence-count calls of the canonical fault loop.
///
/// Subscriptions are classes, not protocols, for speed: the kit's C thunk
/// calls the override through the class's vtable on a borrowed reference,
/// with no reference counting, so a Swift plugin's callback costs what a C
/// one does.
open class IntervalSubscription: @unchecked Sendable {
    // @unchecked: `host` is set by `Host.insertInterval` before the host can
    // call back (the insertion publishes it); the handle is atomic;
    // subclasses synchronise their own state.
    var host: Host?
    /// The host's handle. An invalidation can run on another thread before
    /// `interval_insert` has returned the handle to the inserting one: the
    /// callback then records the handle it was called with, so `setSeq`
    /// always has it.
    private let handleBits = Atomic<UInt>(0)
    var handle: OpaquePointer? {
        get { OpaquePointer(bitPattern: handleBits.load(ordering: .acquiring)) }
        set { handleBits.store(UInt(bitPattern: newValue), ordering: .releasing) }
    }

    public init() {}

    /// [range-dependent] Take the lock your fault path holds around
    /// `readRetry`, call `setSeq(currentSeq)`, stop using the overlap, return
    /// true; for a non-blockable range return false rather than sleep.
    open func invalidate(range: InvalidationRange, currentSeq: UInt64) -> Bool { true }

    /// [blockable] Sleeps while an invalidation of the interval is in progress.
    public final func readBegin() -> UInt64 { host!.table.pointee.interval_read_begin(handle) }
    /// [any-thread] Under the lock `invalidate` takes.
    public final func readRetry(_ seq: UInt64) -> Bool { host!.table.pointee.interval_read_retry(handle, seq) }
    /// Only from `invalidate`.
    public final func setSeq(_ seq: UInt64) { host!.table.pointee.interval_set_seq(handle, seq) }

    nonisolated(unsafe) static var ops = mmulab_interval_ops(
        struct_size: UInt32(MemoryLayout<mmulab_interval_ops>.size),
        invalidate: { data, interval, range, seq in
            Unmanaged<IntervalSubscription>.fromOpaque(data!)._withUnsafeGuaranteedRef {
                if $0.handleBits.load(ordering: .relaxed) == 0 {
                    // Called back before `interval_insert` returned (see `handle`).
                    _ = $0.handleBits.compareExchange(
                        expected: 0, desired: UInt(bitPattern: interval), ordering: .acquiringAndReleasing)
                }
                return $0.invalidate(range: InvalidationRange(range!), currentSeq: seq)
            }
        })
}

/// A whole-address-space subscription (the C `mmulab_subscriber_ops`):
/// subclass it and override the callbacks you need; declare the optional
/// ones in `capabilities` (`MMULAB_CAP_*`).
open class SpaceSubscription: @unchecked Sendable {
    // @unchecked: as for IntervalSubscription.
    var handle: OpaquePointer?
    var ops: mmulab_subscriber_ops

    public init(capabilities: UInt32 = 0) {
        ops = mmulab_subscriber_ops(
            struct_size: UInt32(MemoryLayout<mmulab_subscriber_ops>.size),
            capabilities: capabilities,
            invalidate_range_start: { data, range in
                Unmanaged<SpaceSubscription>.fromOpaque(data!)._withUnsafeGuaranteedRef {
                    $0.invalidateRangeStart(InvalidationRange(range!))
                } ? mmulab_status(MMULAB_OK) : mmulab_status(MMULAB_RETRY)
            },
            invalidate_range_end: { data, range in
                Unmanaged<SpaceSubscription>.fromOpaque(data!)._withUnsafeGuaranteedRef { $0.invalidateRangeEnd(InvalidationRange(range!)) }
            },
            invalidate_secondary_tlbs: nil,
            clear_young: { data, addressSpace, start, end in
                Unmanaged<SpaceSubscription>.fromOpaque(data!)._withUnsafeGuaranteedRef {
                    $0.clearYoung(addressSpace: addressSpace, start: start, end: end)
                } ? 1 : 0
            },
            test_young: { data, addressSpace, address in
                Unmanaged<SpaceSubscription>.fromOpaque(data!)._withUnsafeGuaranteedRef {
                    $0.testYoung(addressSpace: addressSpace, address: address)
                } ? 1 : 0
            },
            change_pte: nil,
            release: { data, addressSpace in
                Unmanaged<SpaceSubscription>.fromOpaque(data!)._withUnsafeGuaranteedRef { $0.release(addressSpace: addressSpace) }
            },
            change_pte_pfn: { data, addressSpace, pfn in
                Unmanaged<SpaceSubscription>.fromOpaque(data!)._withUnsafeGuaranteedRef {
                    $0.changePTE(addressSpace: addressSpace, pfn!.pointee)
                }
            })
    }

    /// [range-dependent] true: done; false: MMULAB_RETRY (non-blockable ranges only).
    open func invalidateRangeStart(_ range: InvalidationRange) -> Bool { true }
    /// [range-dependent] Only after a start that returned true.
    open func invalidateRangeEnd(_ range: InvalidationRange) {}
    /// [non-blockable][reclaim] Needs MMULAB_CAP_YOUNG.
    open func clearYoung(addressSpace: UInt64, start: UInt64, end: UInt64) -> Bool { false }
    /// [non-blockable] Whether the device used `address` recently, without
    /// clearing anything. Needs MMULAB_CAP_YOUNG.
    open func testYoung(addressSpace: UInt64, address: UInt64) -> Bool { false }
    /// [non-blockable] The primary PTE at `pfn.address` now maps `pfn` (a
    /// KSM merge), under the page-table lock, inside a `ksm` invalidation.
    /// Needs MMULAB_CAP_CHANGE_PTE (ABI 1.2 `change_pte_pfn`).
    open func changePTE(addressSpace: UInt64, _ pfn: PFN) {}
    /// [blockable] The address space is going away.
    open func release(addressSpace: UInt64) {}
}

/// A device cache the host may shrink under memory pressure (the C
/// `mmulab_shrinker_ops`): subclass it and override `count` and `scan`.
open class Shrinker: @unchecked Sendable {
    // @unchecked: `handle` is set and cleared by Host.register/unregisterShrinker.
    var handle: OpaquePointer?

    public init() {}

    /// [non-blockable][reclaim] How many objects could be freed now.
    open func count() -> UInt64 { 0 }
    /// [reclaim] Free up to `count` objects; return how many were freed, or
    /// nil when no progress is possible now (a contended lock while
    /// `canBlock` is false: fail fast, never wait).
    open func scan(count: UInt64, canBlock: Bool) -> UInt64? { 0 }

    nonisolated(unsafe) static var ops = mmulab_shrinker_ops(
        struct_size: UInt32(MemoryLayout<mmulab_shrinker_ops>.size),
        count: { data in Unmanaged<Shrinker>.fromOpaque(data!)._withUnsafeGuaranteedRef { $0.count() } },
        scan: { data, count, canBlock in
            Unmanaged<Shrinker>.fromOpaque(data!)._withUnsafeGuaranteedRef { $0.scan(count: count, canBlock: canBlock) } ?? UInt64.max
        })
}
