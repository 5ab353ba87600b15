import CDevicePluginABI
import CPluginOops
import LabSync
import MMUNotifier
import Synchronization

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

extension HostContext: SectionSubject {
    /// How a context violation or a lock-order report inside one of the
    /// instance's calls names it.
    var sectionSubjectName: String { displayName }
}

/// What a call into a plugin needs of its instance, copied out of the
/// `HostContext` once so that the common call (nobody timing callbacks, no
/// lock-order validation) touches no reference-counted object: the frame's
/// label and instance, and whether the call takes the observed path.
struct PluginCallSite {
    /// The instance's label for the oops (`HostContext.reportLabel`, which lives as long as the context).
    let label: UnsafePointer<CChar>
    /// The host context, unretained, as frames record it.
    let instance: UnsafeMutableRawPointer
    /// Someone times the calls or lock order is validated: `callObserved` runs the call.
    let observed: Bool

    @inline(__always)
    init(_ context: HostContext) {
        label = UnsafePointer(context.reportLabel)
        instance = context.opaque
        observed = context.observed
    }

    /// The context (valid while the instance is: every holder of a site is owned by it).
    @inline(__always)
    var context: HostContext { Unmanaged<HostContext>.fromOpaque(instance).takeUnretainedValue() }
}

/// Calls into a plugin: a frame on the thread's call stack (for the oops
/// and for attributing misuses), the thread marked as running the
/// instance's `operation` (for context violations and lock-order reports,
/// when anyone is listening), the call timed for `observer`, and, when lock
/// order is validated, a check that the plugin returns holding no lock it
/// took. `describe` fills in what the call is about.
@inline(__always)
func callPlugin<Result>(
    _ context: HostContext, _ operation: StaticString, timing: PluginCallback? = nil,
    describe: (UnsafeMutablePointer<mmulab_oops_frame>) -> Void = { _ in }, _ body: () -> Result
) -> Result {
    callPlugin(PluginCallSite(context), operation, timing: timing, describe: describe, body)
}

/// `callPlugin` from a site: the frame costs a few stores in thread-local
/// storage; everything else is in `callObserved`, out of line.
@inline(__always)
func callPlugin<Result>(
    _ site: PluginCallSite, _ operation: StaticString, timing: PluginCallback? = nil,
    describe: (UnsafeMutablePointer<mmulab_oops_frame>) -> Void = { _ in }, _ body: () -> Result
) -> Result {
    let frames = ThreadFrames()
    frames.push(
        mmulab_oops_frame(
            plugin: site.label, operation: CallFrames.cString(operation), service: nil, instance: site.instance, object: nil,
            binding: 0, subject: 0, event: 0, a: 0, b: 0, c: 0, d: 0, sequence: 0),
        describe: describe)
    defer { frames.pop() }
    guard site.observed else { return body() }
    // Inline here (out of line, the closure's captures were retained around the whole call).
    return runObserved(site.context, operation, timing: timing, body)
}

/// `runObserved` out of line, for the range callbacks: their fast path then
/// needs no stack frame for it.
@inline(never)
func callObserved<Result>(_ context: HostContext, _ operation: StaticString, timing: PluginCallback?, _ body: () -> Result) -> Result {
    runObserved(context, operation, timing: timing, body)
}

/// A call into a plugin with the thread's frame already pushed, when it
/// is observed: marks the thread as running the instance's `operation`,
/// times the call, and checks that the plugin returns holding no lock it
/// took.
@inline(__always)
func runObserved<Result>(_ context: HostContext, _ operation: StaticString, timing: PluginCallback?, _ body: () -> Result) -> Result {
    let previous = ExecutionContext.enterCurrentCallee(CalleeFrame(callee: context, operation: operation))
    defer { ExecutionContext.restoreCurrentCallee(previous) }
    let held = context.lockOrder?.heldByCurrentThread ?? 0
    let result = timing.map { timed($0, context.observer, context.machine.sync, body) } ?? body()
    if let lockOrder = context.lockOrder, lockOrder.heldByCurrentThread > held {
        let locks = lockOrder.describeHeldByCurrentThread().dropFirst(held)
        context.report(
            "\(operation)", "returned holding \(locks.joined(separator: ", "))", kind: .lockHeldAtReturn,
            summary: "\(operation) returned holding a lock")
    }
    return result
}

/// Calls a plugin's range callback (start, end, secondary TLBs) in a frame
/// that describes the range, written in one go from the C range. `frames`
/// is the calling thread's, reached by the caller before it builds the
/// range (so nothing it computes has to be saved across that call).
@inline(__always)
func callPlugin<Result>(
    _ site: PluginCallSite, _ frames: ThreadFrames, _ operation: StaticString, timing: PluginCallback,
    range: UnsafePointer<mmulab_range>, _ body: () -> Result
) -> Result {
    frames.push(
        mmulab_oops_frame(
            plugin: site.label, operation: CallFrames.cString(operation), service: nil, instance: site.instance, object: nil,
            binding: 0, subject: UInt32(MMULAB_OOPS_SUBJECT_RANGE.rawValue), event: range.pointee.event,
            a: range.pointee.address_space, b: range.pointee.start, c: range.pointee.end,
            d: UInt64(range.pointee.flags & UInt32(MMULAB_RANGE_BLOCKABLE)), sequence: 0))
    defer { frames.pop() }
    guard site.observed else { return body() }
    return callObserved(site.context, operation, timing: timing, body)
}

/// A plugin's whole-address-space subscription, seen by the notifier core
/// as any other subscriber. Every callback is one indirect C call, in a
/// frame naming the instance, the callback and the range.
final class CSubscriber: AddressSpaceSubscriber, @unchecked Sendable {
    // @unchecked: `ops` is an immutable copy; `data` belongs to the plugin,
    // which synchronises its own state; the context outlives the
    // subscription (the host ends every subscription before it lets go).
    let ops: mmulab_subscriber_ops
    let data: UnsafeMutableRawPointer?
    let subscriberName: String
    let capabilities: SubscriberCapabilities
    let device: DeviceID?
    unowned(unsafe) let context: HostContext
    /// The context's call site and ABI minor, copied so a callback reads no other object.
    let site: PluginCallSite
    let minor: Int
    /// Set when the plugin left the subscription behind (detach or destroy
    /// returned with it registered): from then on the host answers in the
    /// plugin's stead until it has removed it, and calls nothing.
    let orphaned = Atomic<Bool>(false)

    init(ops: mmulab_subscriber_ops, data: UnsafeMutableRawPointer?, context: HostContext) {
        self.ops = ops
        self.data = data
        self.context = context
        site = PluginCallSite(context)
        minor = context.negotiatedMinor
        device = context.device
        subscriberName = context.pluginName
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
        if orphaned.load(ordering: .relaxed) { return .ok }
        let frames = ThreadFrames()
        var r = cRange(range, minor: minor)
        let start = ops.invalidate_range_start!
        let data = data
        let status = withUnsafeMutablePointer(to: &r) { r in
            callPlugin(site, frames, PluginCallback.invalidateRangeStart.name, timing: .invalidateRangeStart, range: r) { start(data, r) }
        }
        if status == mmulab_status(MMULAB_RETRY) { return .retry }
        if status != mmulab_status(MMULAB_OK) { reportBadStart(status) }
        return .ok
    }

    @inline(never)
    private func reportBadStart(_ status: mmulab_status) {
        context.report("invalidate_range_start", "answered \(status): only MMULAB_OK or MMULAB_RETRY are answers (taken as OK)")
    }

    @inline(__always)
    func invalidateRangeEnd(_ range: InvalidationRange) {
        if orphaned.load(ordering: .relaxed) { return }
        let frames = ThreadFrames()
        var r = cRange(range, minor: minor)
        let end = ops.invalidate_range_end!
        let data = data
        withUnsafeMutablePointer(to: &r) { r in
            callPlugin(site, frames, PluginCallback.invalidateRangeEnd.name, timing: .invalidateRangeEnd, range: r) { end(data, r) }
        }
    }

    func invalidateSecondaryTLBs(_ range: InvalidationRange) {
        if orphaned.load(ordering: .relaxed) { return }
        let frames = ThreadFrames()
        var r = cRange(range, minor: minor)
        withUnsafeMutablePointer(to: &r) { r in
            callPlugin(site, frames, PluginCallback.invalidateSecondaryTLBs.name, timing: .invalidateSecondaryTLBs, range: r) {
                ops.invalidate_secondary_tlbs?(data, r)
            }
        }
    }

    func clearYoung(addressSpace: AddressSpaceID, start: UInt64, end: UInt64) -> Bool {
        if orphaned.load(ordering: .relaxed) { return false }
        let describe = { (frame: UnsafeMutablePointer<mmulab_oops_frame>) in frame.describe(space: addressSpace.rawValue, start: start, end: end) }
        guard let observer = context.observer else {
            return callPlugin(context, PluginCallback.clearYoung.name, describe: describe) {
                (ops.clear_young?(data, addressSpace.rawValue, start, end) ?? 0) != 0
            }
        }
        let asked = context.machine.sync.now()
        let young = callPlugin(context, PluginCallback.clearYoung.name, timing: .clearYoung, describe: describe) {
            (ops.clear_young?(data, addressSpace.rawValue, start, end) ?? 0) != 0
        }
        observer.youngAnswered(addressSpace: addressSpace, start: start, end: end, askedAt: asked, young: young)
        return young
    }

    func testYoung(addressSpace: AddressSpaceID, address: UInt64) -> Bool {
        if orphaned.load(ordering: .relaxed) { return false }
        return callPlugin(
            context, PluginCallback.testYoung.name, timing: .testYoung,
            describe: { $0.describe(space: addressSpace.rawValue, start: address, end: address + 4096) }
        ) { (ops.test_young?(data, addressSpace.rawValue, address) ?? 0) != 0 }
    }

    func changePTE(addressSpace: AddressSpaceID, _ pte: PrimaryPTE) {
        if orphaned.load(ordering: .relaxed) { return }
        callPlugin(
            context, PluginCallback.changePTE.name, timing: .changePTE,
            describe: { $0.describe(space: addressSpace.rawValue, start: pte.address, end: pte.address + 4096) }
        ) { callChangePTE(addressSpace: addressSpace, pte) }
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
        if orphaned.load(ordering: .relaxed) { return }
        callPlugin(context, PluginCallback.release.name, timing: .release, describe: { $0.describe(space: addressSpace.rawValue) }) {
            ops.release?(data, addressSpace.rawValue)
        }
    }
}

/// A plugin's interval subscription. The C handle for an interval is its
/// `IntervalRecord`'s address; the callback's frame carries it and the
/// sequence it was given, so `interval_set_seq` can be checked against them.
final class CInterval: IntervalInvalidator, @unchecked Sendable {
    // @unchecked: as for CSubscriber; `record` owns this object.
    let ops: mmulab_interval_ops
    let data: UnsafeMutableRawPointer?
    let intervalName: String
    let device: DeviceID?
    unowned(unsafe) let context: HostContext
    unowned(unsafe) var record: IntervalRecord! = nil
    /// As for CSubscriber.
    let site: PluginCallSite
    /// As for CSubscriber: the host acknowledges in the plugin's stead.
    let orphaned = Atomic<Bool>(false)

    init(ops: mmulab_interval_ops, data: UnsafeMutableRawPointer?, context: HostContext) {
        self.ops = ops
        self.data = data
        self.context = context
        site = PluginCallSite(context)
        device = context.device
        intervalName = context.pluginName
    }

    func invalidate(_ interval: IntervalNotifier, range: InvalidationRange, currentSeq: UInt64) -> Bool {
        if orphaned.load(ordering: .relaxed) { return true }
        var r = cRange(range, minor: context.negotiatedMinor)
        let record = record!
        record.publish(interval)  // the callback may come before interval_insert has returned
        let handle = OpaquePointer(record.opaque)
        return callPlugin(
            site, PluginCallback.intervalInvalidate.name, timing: .intervalInvalidate,
            describe: { frame in
                frame.describe(&r)
                frame.pointee.object = UnsafeRawPointer(record.opaque)
                frame.pointee.sequence = currentSeq
                frame.pointee.binding = record.binding
            }
        ) { ops.invalidate!(data, handle, &r, currentSeq) }
    }
}

/// A plugin's shrinker.
final class CShrinker: Shrinker, @unchecked Sendable {
    // @unchecked: as for CSubscriber.
    let ops: mmulab_shrinker_ops
    let data: UnsafeMutableRawPointer?
    let shrinkerName: String
    unowned(unsafe) let context: HostContext
    /// As for CSubscriber: nothing is called once set.
    let orphaned = Atomic<Bool>(false)

    init(ops: mmulab_shrinker_ops, data: UnsafeMutableRawPointer?, name: String, context: HostContext) {
        self.ops = ops
        self.data = data
        shrinkerName = name
        self.context = context
    }

    func count(_ control: ShrinkControl) -> Int {
        if orphaned.load(ordering: .relaxed) { return 0 }
        return Int(clamping: callPlugin(context, "shrinker count") { ops.count!(data) })
    }

    func scan(_ control: ShrinkControl) -> ShrinkScanResult {
        if orphaned.load(ordering: .relaxed) { return .stop }
        let freed = callPlugin(context, PluginCallback.shrinkerScan.name, timing: .shrinkerScan) {
            ops.scan!(data, UInt64(control.objectsToScan), control.canBlock)
        }
        return freed == UInt64.max ? .stop : .freed(Int(clamping: freed))  // MMULAB_SHRINK_STOP
    }
}
