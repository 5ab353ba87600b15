import DevicePluginKit
import Synchronization

/// The fault and transfer loop shared by on-demand-paging regions: look up
/// the translation; if the NIC has none, raise a page fault, resolve it
/// with the canonical loop, and retry the operation (mlx5: the responder
/// answers RNR and the WQE is replayed after the page-fault handler ran).
extension MemoryRegion {
    /// Retries before a transfer gives up as livelocked (each retry means an
    /// invalidation hit the range between the fault and the install).
    static let maximumAttempts = 1_000

    func transferOnDemand(
        _ address: UInt64, write: Bool, _ buffer: UnsafeMutableRawBufferPointer, umem: (UInt64) throws(PluginError) -> UmemODP
    ) throws(PluginError) {
        for _ in 0..<Self.maximumAttempts {
            let table = try umem(address)
            if let pfn = table.beginTransfer(address, write: write) {
                nic.dma(addressSpace, pfn, write: write, buffer)
                table.endTransfer(address)
                return
            }
            try faultIn(table, around: address, write: write)
        }
        throw .busy("the page fault at 0x\(String(address, radix: 16)) was invalidated \(Self.maximumAttempts) times in a row")
    }

    /// Resolves a page fault at `address`: a window of `fault-pages` pages
    /// around it, faulted writable if the region is writable (mlx5 asks for
    /// write access whenever the MR allows it). If the window cannot be
    /// faulted whole (part unmapped or read-only), the single page is.
    func faultIn(_ table: UmemODP, around address: UInt64, write: Bool) throws(PluginError) {
        let window = nic.configuration.faultPages * 4096
        let first = max(table.start, address & ~(window - 1))
        let last = min(table.end, first + window)
        let page = address & ~4095
        do {
            _ = try table.fault(first, last, write: writable)
        } catch where last - first > 4096 || (writable && !write) {
            do {
                _ = try table.fault(page, page + 4096, write: writable)
            } catch where writable && !write {
                _ = try table.fault(page, page + 4096, write: false)  // a read through a writable region of read-only memory
            }
        }
    }

    /// Faults every window of `[first, last)` in (ibv_advise_mr prefetch).
    func prefetchOnDemand(_ first: UInt64, _ last: UInt64, umem: (UInt64) throws(PluginError) -> UmemODP) throws(PluginError) {
        var address = first
        while address < last {
            let table = try umem(address)
            let window = nic.configuration.faultPages * 4096
            let stop = min(last, table.end, (address & ~(window - 1)) + window)
            var attempts = 0
            while try !table.fault(address, stop, write: writable) {
                attempts += 1
                if attempts == Self.maximumAttempts { throw .busy("prefetch at 0x\(String(address, radix: 16)) kept being invalidated") }
            }
            address = stop
        }
    }
}

/// An explicit on-demand-paging region: one translation table over the
/// whole window and one interval notifier (`ibv_reg_mr` with
/// `IBV_ACCESS_ON_DEMAND`).
final class ODPRegion: MemoryRegion, @unchecked Sendable {
    let umem: UmemODP

    init(nic: NIC, registering request: Request) throws(PluginError) {
        umem = UmemODP(
            nic: nic, addressSpace: request.addressSpace, start: request.start, end: request.end,
            writable: request.access.contains(.remoteWrite), parent: nil)
        super.init(nic: nic, request)
        try nic.host.insertInterval(addressSpace: addressSpace, start: start, length: end - start, umem)
        nic.counters.odpRegions.bump()
    }

    override func transfer(_ address: UInt64, write: Bool, _ buffer: UnsafeMutableRawBufferPointer) throws(PluginError) {
        try transferOnDemand(address, write: write, buffer) { _ in umem }
    }

    override func prefetch(_ first: UInt64, _ last: UInt64) throws(PluginError) {
        try prefetchOnDemand(first, last) { _ in umem }
    }

    override func release() {
        umem.releaseAll()
        nic.host.removeInterval(umem)
        nic.counters.odpRegions.drop()
    }
}

/// An implicit on-demand-paging region over the whole address space
/// (`ibv_reg_mr(pd, NULL, SIZE_MAX, IBV_ACCESS_ON_DEMAND)`; mlx5's
/// implicit MR). It has no table of its own: a child region per chunk is
/// made on the first fault in the chunk, with its own interval notifier,
/// and freed after an invalidation empties it. The freeing is deferred
/// out of the callback (removing an interval waits for callbacks; mlx5
/// queues `destroy_unused_implicit_child_mr` to a work) and done by the
/// next fault or prefetch on the region, or at deregistration.
final class ImplicitODPRegion: MemoryRegion, @unchecked Sendable {
    // @unchecked: `children` and `garbage` are guarded by `childrenLock`.
    /// The user address space an implicit region covers.
    static let span: UInt64 = 1 << 47

    private let childrenLock: HostLock
    private var children: [UInt64: UmemODP] = [:]
    private var garbage: [UmemODP] = []

    init(nic: NIC, addressSpace: UInt64, access: AccessFlags) {
        childrenLock = nic.host.makeLock("rdma implicit children", spin: true)
        super.init(nic: nic, Request(addressSpace: addressSpace, start: 0, end: Self.span, iova: 0, access: access))
        nic.counters.implicitRegions.bump()
    }

    var chunkSize: UInt64 { nic.configuration.implicitChunkPages * 4096 }

    /// Children alive now.
    var childCount: Int { childrenLock.withLock { children.count } }

    /// The child over the chunk of `address`, made (and its interval
    /// inserted, which may sleep) if there is none or it was retired.
    func child(for address: UInt64) throws(PluginError) -> UmemODP {
        let chunk = address & ~(chunkSize - 1)
        if let existing = childrenLock.withLock({ children[chunk] }), !existing.dead.load(ordering: .acquiring) { return existing }
        let made = UmemODP(nic: nic, addressSpace: addressSpace, start: chunk, end: chunk + chunkSize, writable: writable, parent: self)
        try nic.host.insertInterval(addressSpace: addressSpace, start: chunk, length: chunkSize, made)
        let (winner, replaced) = childrenLock.withLock { () -> (UmemODP, UmemODP?) in
            if let other = children[chunk], !other.dead.load(ordering: .acquiring) { return (other, nil) }
            let replaced = children.updateValue(made, forKey: chunk)
            return (made, replaced)
        }
        if winner !== made {
            nic.host.removeInterval(made)  // another fault made it first
        } else {
            nic.counters.childrenCreated.bump()
            nic.counters.implicitChildren.bump()
            if let replaced { free(replaced) }
        }
        return winner
    }

    /// From a child's invalidation that emptied it: free it later.
    func retire(_ child: UmemODP) {
        childrenLock.withLock { garbage.append(child) }
    }

    /// Frees retired children still empty (a child refilled since is kept).
    func collectGarbage() {
        let candidates = childrenLock.withLock { () -> [UmemODP] in
            defer { garbage.removeAll() }
            return garbage
        }
        for child in candidates where !child.dead.load(ordering: .acquiring) && child.retireIfEmpty() {
            let removed = childrenLock.withLock { () -> Bool in
                guard children[child.start] === child else { return false }
                children.removeValue(forKey: child.start)
                return true
            }
            if removed { free(child) }
        }
    }

    /// Removes a dead child's interval (no locks held: it waits for callbacks).
    private func free(_ child: UmemODP) {
        nic.host.removeInterval(child)
        nic.counters.childrenFreed.bump()
        nic.counters.implicitChildren.drop()
    }

    override func transfer(_ address: UInt64, write: Bool, _ buffer: UnsafeMutableRawBufferPointer) throws(PluginError) {
        collectGarbage()
        try transferOnDemand(address, write: write, buffer) { address throws(PluginError) in try child(for: address) }
    }

    override func prefetch(_ first: UInt64, _ last: UInt64) throws(PluginError) {
        collectGarbage()
        try prefetchOnDemand(first, last) { address throws(PluginError) in try child(for: address) }
    }

    override func release() {
        collectGarbage()
        let all = childrenLock.withLock { () -> [UmemODP] in
            defer { children.removeAll() }
            return Array(children.values)
        }
        for child in all {
            child.releaseAll()
            free(child)
        }
        nic.counters.implicitRegions.drop()
    }
}
