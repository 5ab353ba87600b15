import CDevicePluginABI
import DevicePluginKit

/// A binding heard through an interval subscription (bugs stale, stale-ref, sleep,
/// ignore-wp, no-dirty, late-dirty, zero-page, lazy-free, keep-exclusive, ignore-mremap, huge-split; correct otherwise): the canonical fault
/// loop with `read_begin` / `read_retry`.
final class IntervalTable: IntervalSubscription, BrokenTable, @unchecked Sendable {
    unowned let device: BrokenMirror
    let request: BindingRequest
    var pages: [MirrorEntry]

    init(device: BrokenMirror, request: BindingRequest) {
        self.device = device
        self.request = request
        pages = Array(repeating: MirrorEntry(), count: Int(request.length / 4096))
    }

    /// [range-dependent] Where most of the bugs live.
    override func invalidate(range: InvalidationRange, currentSeq: UInt64) -> Bool {
        if device.bug == .sleep && !range.isBlockable { device.host.sleep(nanoseconds: 10_000) }  // BUG (sleep): must not sleep here
        if device.skips(range) { return true }  // its own exclusive conversion (BUG (keep-exclusive): any)
        if device.bug == .hugeSplit && range.event == MMULAB_EVENT_HUGE_SPLIT.rawValue { return true }  // BUG (huge-split): "nothing moved"
        device.lock.lock()
        setSeq(currentSeq)
        let protection = range.event == MMULAB_EVENT_MPROTECT.rawValue || range.event == MMULAB_EVENT_WRITE_PROTECT.rawValue
            || range.event == MMULAB_EVENT_SOFT_DIRTY.rawValue
        let keep = device.bug == .stale || device.bug == .staleReference  // BUG (stale, stale-ref)
            || (device.bug == .ignoreWriteProtect && protection)  // BUG (ignore-wp)
            || (device.bug == .ignoreMremap && range.event == MMULAB_EVENT_MREMAP.rawValue)  // BUG (ignore-mremap)
        if !keep { device.zap(self, range.start, range.end) }
        device.lock.unlock()
        return true
    }

    func faultBegin(_ address: UInt64) -> UInt64? { readBegin() }
    func faultRaced(_ token: UInt64, _ address: UInt64) -> Bool { readRetry(token) }
    func unhook() { device.host.removeInterval(self) }
}
