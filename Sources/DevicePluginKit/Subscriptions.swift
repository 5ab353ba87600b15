public import CDevicePluginABI

/// What an interval subscription does when the primary invalidates
/// (the C `mmulab_interval_ops.invalidate`, with its contexts).
public protocol IntervalCallbacks: AnyObject {
    /// [range-dependent] Take the lock your fault path holds around
    /// `readRetry`, call `interval.setSeq(currentSeq)`, stop using the
    /// overlap, return true; for a non-blockable range return false rather
    /// than sleep.
    func invalidate(_ interval: Interval, range: mmulab_range, currentSeq: UInt64) -> Bool
}

/// An interval subscription: the handle, and the sequence-count calls of
/// the canonical fault loop.
public final class Interval: @unchecked Sendable {
    // @unchecked: `handle` is set once by `Host.insertInterval` and cleared
    // by `Host.removeInterval`; the callbacks synchronise themselves.
    let host: Host
    let callbacks: any IntervalCallbacks
    var handle: OpaquePointer?

    init(host: Host, callbacks: any IntervalCallbacks) {
        self.host = host
        self.callbacks = callbacks
    }

    /// [blockable] Sleeps while an invalidation of the interval is in progress.
    public func readBegin() -> UInt64 { host.table.pointee.interval_read_begin(handle) }
    /// [any-thread] Under the lock the invalidate callback takes.
    public func readRetry(_ seq: UInt64) -> Bool { host.table.pointee.interval_read_retry(handle, seq) }
    /// Only from `IntervalCallbacks.invalidate`.
    public func setSeq(_ seq: UInt64) { host.table.pointee.interval_set_seq(handle, seq) }

    nonisolated(unsafe) static var ops = mmulab_interval_ops(
        struct_size: UInt32(MemoryLayout<mmulab_interval_ops>.size),
        invalidate: { data, _, range, seq in
            let interval = Unmanaged<Interval>.fromOpaque(data!).takeUnretainedValue()
            return interval.callbacks.invalidate(interval, range: range!.pointee, currentSeq: seq)
        })
}

/// A whole-address-space subscription's callbacks. Only the start and end
/// are required; a type declares the rest through `capabilities`.
public protocol SubscriberCallbacks: AnyObject {
    /// `MMULAB_CAP_*` bits: which optional callbacks mean something.
    var capabilities: UInt32 { get }
    /// [range-dependent] true: done; false: MMULAB_RETRY (non-blockable only).
    func invalidateRangeStart(_ range: mmulab_range) -> Bool
    /// [range-dependent]
    func invalidateRangeEnd(_ range: mmulab_range)
    /// [non-blockable]
    func clearYoung(addressSpace: UInt64, start: UInt64, end: UInt64) -> Bool
    /// [blockable]
    func release(addressSpace: UInt64)
}

extension SubscriberCallbacks {
    public var capabilities: UInt32 { 0 }
    public func clearYoung(addressSpace: UInt64, start: UInt64, end: UInt64) -> Bool { false }
    public func release(addressSpace: UInt64) {}
}

/// A whole-address-space subscription.
public final class Subscription: @unchecked Sendable {
    // @unchecked: as for Interval.
    let callbacks: any SubscriberCallbacks
    var handle: OpaquePointer?
    var ops: mmulab_subscriber_ops

    init(callbacks: any SubscriberCallbacks) {
        self.callbacks = callbacks
        ops = mmulab_subscriber_ops(
            struct_size: UInt32(MemoryLayout<mmulab_subscriber_ops>.size),
            capabilities: callbacks.capabilities,
            invalidate_range_start: { data, range in
                Unmanaged<Subscription>.fromOpaque(data!).takeUnretainedValue().callbacks.invalidateRangeStart(range!.pointee)
                    ? mmulab_status(MMULAB_OK) : mmulab_status(MMULAB_RETRY)
            },
            invalidate_range_end: { data, range in
                Unmanaged<Subscription>.fromOpaque(data!).takeUnretainedValue().callbacks.invalidateRangeEnd(range!.pointee)
            },
            invalidate_secondary_tlbs: nil,
            clear_young: { data, addressSpace, start, end in
                Unmanaged<Subscription>.fromOpaque(data!).takeUnretainedValue().callbacks
                    .clearYoung(addressSpace: addressSpace, start: start, end: end) ? 1 : 0
            },
            test_young: nil,
            change_pte: nil,
            release: { data, addressSpace in
                Unmanaged<Subscription>.fromOpaque(data!).takeUnretainedValue().callbacks.release(addressSpace: addressSpace)
            })
    }
}
