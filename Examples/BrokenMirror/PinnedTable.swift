import DevicePluginKit

/// A binding registered the way an RDMA NIC without on-demand paging
/// registers memory (bug=longterm-pfn only): every page pinned long-term
/// for the binding's whole life, no notifier. The bug: it looks the pages
/// up with fault_range first and then pins them, and keeps the
/// translations the lookup gave. A long-term pin moves a page out of
/// movable memory before it pins it (FOLL_LONGTERM, a migrate
/// invalidation this binding does not hear), so the device goes on using
/// frames the primary freed: stale translation / use after free.
final class PinnedTable: @unchecked Sendable {
    // @unchecked: `looked` and `pinned` are fixed at attach; `written` is
    // guarded by the device lock.
    let request: BindingRequest
    /// What fault_range gave before the pin (BUG: what the device uses).
    let looked: [PFN]
    /// What the long-term pin gave (what it should use; unpinned at detach).
    let pinned: [PFN]
    var written: [Bool]

    init(device: BrokenMirror, request: BindingRequest) throws(PluginError) {
        self.request = request
        looked = try device.host.faultRange(
            addressSpace: request.addressSpace, start: request.start, length: request.length, write: request.writable)
        pinned = try device.host.pin(
            addressSpace: request.addressSpace, start: request.start, length: request.length, write: request.writable, longTerm: true)
        written = Array(repeating: false, count: pinned.count)
    }

    /// The device's access to page `index` (device lock held): through the
    /// translation looked up before the pin (BUG (longterm-pfn)).
    func access(_ device: BrokenMirror, index: Int, write: Bool, _ buffer: UnsafeMutableRawBufferPointer) {
        if write {
            device.host.dmaWrite(addressSpace: request.addressSpace, looked[index], from: UnsafeRawBufferPointer(buffer))
            written[index] = true
        } else {
            device.host.dmaRead(addressSpace: request.addressSpace, looked[index], into: buffer)
        }
    }

    /// Returns the pins, the written pages dirty.
    func release(_ device: BrokenMirror) {
        let wrote = device.lock.withLock { written }
        device.host.unpin(pinned.indices.filter { wrote[$0] }.map { pinned[$0] }, dirty: true)
        device.host.unpin(pinned.indices.filter { !wrote[$0] }.map { pinned[$0] }, dirty: false)
    }
}
