import CDevicePluginABI
import DevicePluginKit

/// A binding heard through a whole-space subscription (bugs zap-at-end,
/// not-young, ignore-release; correct otherwise), as KVM hears its
/// address space: invalidations in progress are listed, each page counts
/// the invalidations that ended over it, and a fault retries if one
/// covering its page is in progress or ended since it began (KVM's
/// `mmu_invalidate_retry_gfn`, per page).
final class SpaceTable: SpaceSubscription, BrokenTable, @unchecked Sendable {
    unowned let device: BrokenMirror
    let request: BindingRequest
    var pages: [MirrorEntry]
    /// Guarded by the device lock: ranges between start and end, and per
    /// page how many invalidations ended over it.
    private var inProgress: [(start: UInt64, end: UInt64)] = []
    private var sequences: [UInt64]
    /// Guarded by the device lock: the space was released.
    private var released = false

    init(device: BrokenMirror, request: BindingRequest) {
        self.device = device
        self.request = request
        pages = Array(repeating: MirrorEntry(), count: Int(request.length / 4096))
        sequences = Array(repeating: 0, count: Int(request.length / 4096))
        super.init(capabilities: device.bug == .notYoung ? UInt32(MMULAB_CAP_YOUNG) : 0)
    }

    override func invalidateRangeStart(_ range: InvalidationRange) -> Bool {
        if device.skips(range) { return true }  // its own exclusive conversion
        device.lock.withLock {
            inProgress.append((range.start, range.end))
            if device.bug != .zapAtEnd { device.zap(self, range.start, range.end) }
        }
        return true
    }

    override func invalidateRangeEnd(_ range: InvalidationRange) {
        if device.skips(range) { return }
        // BUG (zap-at-end): the device's TLB shootdown and the zap happen
        // here, after the primary may already have freed the pages; the
        // shootdown takes its time while the device keeps running.
        if device.bug == .zapAtEnd && range.isBlockable { device.host.sleep(nanoseconds: 50_000) }
        device.lock.withLock {
            if device.bug == .zapAtEnd { device.zap(self, range.start, range.end) }  // BUG (zap-at-end): pages may be freed before this
            if let index = inProgress.firstIndex(where: { $0.start == range.start && $0.end == range.end }) { inProgress.remove(at: index) }
            var address = max(range.start, request.start)
            while address < min(range.end, request.start + request.length) {
                sequences[Int((address - request.start) / 4096)] += 1
                address += 4096
            }
        }
    }

    /// Only with bug=not-young, which declares MMULAB_CAP_YOUNG.
    override func clearYoung(addressSpace: UInt64, start: UInt64, end: UInt64) -> Bool {
        // BUG (not-young): the accessed bits are cleared but never reported.
        device.lock.withLock {
            var address = max(start, request.start)
            while address < min(end, request.start + request.length) {
                pages[Int((address - request.start) / 4096)].young = false
                address += 4096
            }
        }
        return false
    }

    override func testYoung(addressSpace: UInt64, address: UInt64) -> Bool { false }

    override func release(addressSpace: UInt64) {
        guard device.bug != .ignoreRelease else { return }  // BUG (ignore-release): nothing more will be heard
        device.lock.withLock {
            released = true
            device.zap(self, request.start, request.start + request.length)
        }
    }

    func faultBegin(_ address: UInt64) -> UInt64? {
        device.lock.withLock {
            guard !released, !inProgress.contains(where: { address >= $0.start && address < $0.end }) else { return nil }
            return sequences[Int((address - request.start) / 4096)]
        }
    }

    func faultRaced(_ token: UInt64, _ address: UInt64) -> Bool {
        released || sequences[Int((address - request.start) / 4096)] != token || inProgress.contains { address >= $0.start && address < $0.end }
    }

    func unhook() { device.host.unsubscribe(self) }
}
