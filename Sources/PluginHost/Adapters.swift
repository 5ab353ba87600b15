import CDevicePluginABI
import LabSync
import MMUNotifier

/// The C view of an invalidation range, for an instance that negotiated
/// ABI minor `minor`: the events 1.5 added (MADV_FREE, a huge page's split,
/// a collapse) reach an older instance as MMULAB_EVENT_MADVISE_DONTNEED,
/// the CLEAR-type event it knows (the VMA stays, the translations go).
func cRange(_ range: InvalidationRange, minor: Int) -> mmulab_range {
    var flags: UInt32 = range.blockable ? UInt32(MMULAB_RANGE_BLOCKABLE) : 0
    if range.owner != nil { flags |= UInt32(MMULAB_RANGE_HAS_OWNER) }
    var event = range.event
    if minor < 5, event.rawValue > NotifierEvent.oomReap.rawValue { event = .madviseDontNeed }
    return mmulab_range(
        address_space: range.addressSpace.rawValue, start: range.start, end: range.end,
        event: UInt32(event.rawValue), flags: flags, owner: range.owner?.rawValue ?? 0)
}

/// Copies a plugin's table, keeping only the fields its declared size covers.
func copyTable<Table>(_ table: UnsafePointer<Table>, sizeField: KeyPath<Table, UInt32>, empty: Table) -> Table {
    let declared = Int(table.pointee[keyPath: sizeField])
    var copy = empty
    withUnsafeMutableBytes(of: &copy) { target in
        target.copyMemory(from: UnsafeRawBufferPointer(start: table, count: min(declared, MemoryLayout<Table>.size)))
    }
    return copy
}

/// A plugin's whole-address-space subscription, seen by the notifier core
/// as any other subscriber. Every callback is one indirect C call.
final class CSubscriber: AddressSpaceSubscriber, @unchecked Sendable {
    // @unchecked: `ops` is an immutable copy; `data` belongs to the plugin,
    // which synchronises its own state.
    let ops: mmulab_subscriber_ops
    let data: UnsafeMutableRawPointer?
    let subscriberName: String
    let capabilities: SubscriberCapabilities
    let device: DeviceID?
    let observer: (any CallbackObserver)?
    /// The host's clock: callback timings and young answers read it.
    let clock: SyncDomain
    /// The ABI minor the instance negotiated (which events it knows).
    let minor: Int

    init(
        ops: mmulab_subscriber_ops, data: UnsafeMutableRawPointer?, name: String, device: DeviceID, observer: (any CallbackObserver)?,
        clock: SyncDomain, minor: Int
    ) {
        self.minor = minor
        self.ops = ops
        self.data = data
        self.device = device
        subscriberName = name
        self.observer = observer
        self.clock = clock
        var capabilities: SubscriberCapabilities = []
        if ops.capabilities & UInt32(MMULAB_CAP_CHANGE_PTE) != 0, ops.change_pte != nil || ops.change_pte_pfn != nil {
            capabilities.insert(.changePTE)
        }
        if ops.capabilities & UInt32(MMULAB_CAP_YOUNG) != 0, ops.clear_young != nil || ops.test_young != nil {
            capabilities.insert(.youngTracking)
        }
        if ops.capabilities & UInt32(MMULAB_CAP_SECONDARY_TLB) != 0, ops.invalidate_secondary_tlbs != nil {
            capabilities.insert(.secondaryTLB)
        }
        self.capabilities = capabilities
    }

    @inline(__always)
    func invalidateRangeStart(_ range: InvalidationRange) -> StartResult {
        var r = cRange(range, minor: minor)
        return timed(.invalidateRangeStart, observer, clock) { ops.invalidate_range_start!(data, &r) } == mmulab_status(MMULAB_RETRY) ? .retry : .ok
    }

    @inline(__always)
    func invalidateRangeEnd(_ range: InvalidationRange) {
        var r = cRange(range, minor: minor)
        timed(.invalidateRangeEnd, observer, clock) { ops.invalidate_range_end!(data, &r) }
    }

    func invalidateSecondaryTLBs(_ range: InvalidationRange) {
        var r = cRange(range, minor: minor)
        timed(.invalidateSecondaryTLBs, observer, clock) { ops.invalidate_secondary_tlbs?(data, &r) }
    }

    func clearYoung(addressSpace: AddressSpaceID, start: UInt64, end: UInt64) -> Bool {
        guard let observer else { return (ops.clear_young?(data, addressSpace.rawValue, start, end) ?? 0) != 0 }
        let asked = clock.now()
        let young = timed(.clearYoung, observer, clock) { (ops.clear_young?(data, addressSpace.rawValue, start, end) ?? 0) != 0 }
        observer.youngAnswered(addressSpace: addressSpace, start: start, end: end, askedAt: asked, young: young)
        return young
    }

    func testYoung(addressSpace: AddressSpaceID, address: UInt64) -> Bool {
        timed(.testYoung, observer, clock) { (ops.test_young?(data, addressSpace.rawValue, address) ?? 0) != 0 }
    }

    func changePTE(addressSpace: AddressSpaceID, _ pte: PrimaryPTE) {
        timed(.changePTE, observer, clock) { callChangePTE(addressSpace: addressSpace, pte) }
    }

    private func callChangePTE(addressSpace: AddressSpaceID, _ pte: PrimaryPTE) {
        if let changeWithPFN = ops.change_pte_pfn {
            var pfn = mmulab_pfn(
                address: pte.address, pfn: pte.frame.rawValue, generation: pte.generation,
                flags: pte.writable ? UInt32(MMULAB_PFN_WRITABLE) : 0)
            changeWithPFN(data, addressSpace.rawValue, &pfn)
        } else {
            ops.change_pte?(data, addressSpace.rawValue, pte.address, pte.frame.rawValue, pte.writable ? 1 : 0)
        }
    }

    func release(addressSpace: AddressSpaceID) {
        timed(.release, observer, clock) { ops.release?(data, addressSpace.rawValue) }
    }
}

/// A plugin's interval subscription. The C handle for an interval is the
/// `IntervalNotifier` object's address.
final class CInterval: IntervalInvalidator, @unchecked Sendable {
    // @unchecked: as for CSubscriber.
    let ops: mmulab_interval_ops
    let data: UnsafeMutableRawPointer?
    let intervalName: String
    let device: DeviceID?
    let observer: (any CallbackObserver)?
    let clock: SyncDomain
    /// The ABI minor the instance negotiated (which events it knows).
    let minor: Int

    init(
        ops: mmulab_interval_ops, data: UnsafeMutableRawPointer?, name: String, device: DeviceID, observer: (any CallbackObserver)?,
        clock: SyncDomain, minor: Int
    ) {
        self.minor = minor
        self.ops = ops
        self.data = data
        self.device = device
        intervalName = name
        self.observer = observer
        self.clock = clock
    }

    func invalidate(_ interval: IntervalNotifier, range: InvalidationRange, currentSeq: UInt64) -> Bool {
        var r = cRange(range, minor: minor)
        let handle = OpaquePointer(Unmanaged.passUnretained(interval).toOpaque())
        return timed(.intervalInvalidate, observer, clock) { ops.invalidate!(data, handle, &r, currentSeq) }
    }
}

/// A plugin's shrinker.
final class CShrinker: Shrinker, @unchecked Sendable {
    // @unchecked: as for CSubscriber.
    let ops: mmulab_shrinker_ops
    let data: UnsafeMutableRawPointer?
    let shrinkerName: String
    let observer: (any CallbackObserver)?
    let clock: SyncDomain

    init(ops: mmulab_shrinker_ops, data: UnsafeMutableRawPointer?, name: String, observer: (any CallbackObserver)?, clock: SyncDomain) {
        self.ops = ops
        self.data = data
        shrinkerName = name
        self.observer = observer
        self.clock = clock
    }

    func count(_ control: ShrinkControl) -> Int { Int(clamping: ops.count!(data)) }

    func scan(_ control: ShrinkControl) -> ShrinkScanResult {
        let freed = timed(.shrinkerScan, observer, clock) { ops.scan!(data, UInt64(control.objectsToScan), control.canBlock) }
        return freed == UInt64.max ? .stop : .freed(Int(clamping: freed))  // MMULAB_SHRINK_STOP
    }
}

/// What a C handle to a lock stands for.
final class HostLock: @unchecked Sendable {
    let sleeping: SleepingLock?
    let spin: SpinLock?
    /// The instance that made it (its calls are checked for foreign threads).
    let host: HostContext
    init(sleeping: SleepingLock, host: HostContext) {
        self.sleeping = sleeping
        spin = nil
        self.host = host
    }
    init(spin: SpinLock, host: HostContext) {
        sleeping = nil
        self.spin = spin
        self.host = host
    }
}

/// What a C handle to a completion stands for.
final class HostCompletion: @unchecked Sendable {
    let completion: Completion
    let host: HostContext
    init(_ completion: Completion, host: HostContext) {
        self.completion = completion
        self.host = host
    }
    static func from(_ handle: OpaquePointer?) -> HostCompletion {
        Unmanaged<HostCompletion>.fromOpaque(UnsafeRawPointer(handle!)).takeUnretainedValue()
    }
}

/// What a C subscription or shrinker handle stands for.
final class SubscriptionRecord: @unchecked Sendable {
    let subscriber: CSubscriber
    let notifiers: AddressSpaceNotifiers
    init(subscriber: CSubscriber, notifiers: AddressSpaceNotifiers) {
        self.subscriber = subscriber
        self.notifiers = notifiers
    }
}
