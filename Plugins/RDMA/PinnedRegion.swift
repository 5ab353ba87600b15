import DevicePluginKit

/// A region registered without on-demand paging (`ibv_reg_mr` without
/// `IBV_ACCESS_ON_DEMAND`), the contrast to ODP: every page is pinned at
/// registration, long-term (FOLL_LONGTERM, as `ib_umem_get` pins: pages
/// in movable memory are moved out of it first, and the NIC uses only the
/// pfns the pin returns), no notifier is taken, and the pages can be neither
/// reclaimed nor migrated until deregistration unpins them, reporting the
/// ones the NIC wrote dirty (`unpin_user_pages_dirty_lock`; a page cleaned
/// by writeback while pinned would otherwise be dropped clean and the
/// NIC's writes lost). The pinned memory shows in the NIC's statistics.
final class PinnedRegion: MemoryRegion, @unchecked Sendable {
    // @unchecked: `written` is guarded by `lock`; `pfns` is immutable.
    private let pfns: [PFN]
    private var written: [Bool]
    private let lock: HostLock

    init(nic: NIC, registering request: Request) throws(PluginError) {
        pfns = try nic.host.pin(
            addressSpace: request.addressSpace, start: request.start, length: request.end - request.start,
            write: request.access.contains(.remoteWrite), longTerm: true)
        written = Array(repeating: false, count: pfns.count)
        lock = nic.host.makeLock("rdma pinned region", spin: true)
        super.init(nic: nic, request)
        nic.counters[.pinnedRegions].bump()
        nic.counters[.pinnedPages].bump(UInt64(pfns.count))
    }

    override func transfer(_ address: UInt64, write: Bool, _ buffer: UnsafeMutableRawBufferPointer) throws(PluginError) {
        let i = Int((address - start) / 4096)
        if write { lock.withLock { written[i] = true } }
        nic.dma(addressSpace, pfns[i], write: write, buffer)
    }

    override func prefetch(_ first: UInt64, _ last: UInt64) throws(PluginError) {}  // always present

    override func release() {
        let wrote = lock.withLock { written }
        nic.host.unpin(pfns.indices.filter { wrote[$0] }.map { pfns[$0] }, dirty: true)
        nic.host.unpin(pfns.indices.filter { !wrote[$0] }.map { pfns[$0] }, dirty: false)
        nic.counters[.pagesDirtied].bump(UInt64(wrote.filter { $0 }.count))
        nic.counters[.pinnedRegions].drop()
        nic.counters[.pinnedPages].drop(UInt64(pfns.count))
    }
}
