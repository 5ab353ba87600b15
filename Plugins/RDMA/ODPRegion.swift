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

    func transferOnDemand(_ address: UInt64, write: Bool, _ buffer: UnsafeMutableRawBufferPointer) throws(PluginError) {
        for _ in 0..<Self.maximumAttempts {
            let table = try acquireTable(for: address)
            defer { releaseTable(table) }
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
    func prefetchOnDemand(_ first: UInt64, _ last: UInt64) throws(PluginError) {
        var address = first
        while address < last {
            let table = try acquireTable(for: address)
            defer { releaseTable(table) }
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
        nic.counters[.odpRegions].bump()
    }

    override func acquireTable(for address: UInt64) throws(PluginError) -> UmemODP { umem }

    override func transfer(_ address: UInt64, write: Bool, _ buffer: UnsafeMutableRawBufferPointer) throws(PluginError) {
        try transferOnDemand(address, write: write, buffer)
    }

    override func prefetch(_ first: UInt64, _ last: UInt64) throws(PluginError) {
        try prefetchOnDemand(first, last)
    }

    override func release() {
        umem.releaseAll()
        nic.host.removeInterval(umem)
        nic.counters[.odpRegions].drop()
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
    // @unchecked: `children`, `garbage` and each child's `users` are
    // guarded by `childrenLock`.
    /// The user address space an implicit region covers.
    static let span: UInt64 = 1 << 47

    /// A sleeping lock: it nests each child's mutex (to retire it), and the
    /// invalidation callbacks that take it are blockable ones.
    private let childrenLock: HostLock
    private var children: [UInt64: UmemODP] = [:]
    /// Children left empty, to free once nobody uses them, by start address
    /// (freed in address order, so a replay frees them alike).
    private var garbage: [UInt64: UmemODP] = [:]

    init(nic: NIC, addressSpace: UInt64, access: AccessFlags) {
        childrenLock = nic.host.makeLock("rdma implicit children", spin: false)
        super.init(nic: nic, Request(addressSpace: addressSpace, start: 0, end: Self.span, iova: 0, access: access))
        nic.counters[.implicitRegions].bump()
    }

    var chunkSize: UInt64 { nic.configuration.implicitChunkPages * 4096 }

    /// The child over the chunk of `address`, in use by the caller until
    /// `releaseTable`; made (and its interval inserted, which may sleep,
    /// so outside the lock) if there is none. A child in use is never freed.
    override func acquireTable(for address: UInt64) throws(PluginError) -> UmemODP {
        let chunk = address & ~(chunkSize - 1)
        let existing = childrenLock.withLock { () -> UmemODP? in
            guard let child = children[chunk] else { return nil }
            child.users += 1
            return child
        }
        if let existing { return existing }
        let made = UmemODP(nic: nic, addressSpace: addressSpace, start: chunk, end: chunk + chunkSize, writable: writable, parent: self)
        try nic.host.insertInterval(addressSpace: addressSpace, start: chunk, length: chunkSize, made)
        let winner = childrenLock.withLock { () -> UmemODP in
            let child = children[chunk] ?? made
            children[chunk] = child
            child.users += 1
            return child
        }
        if winner !== made {
            nic.host.removeInterval(made)  // another fault made it first
        } else {
            nic.counters[.childrenCreated].bump()
            nic.counters[.implicitChildren].bump()
        }
        return winner
    }

    /// Ends a use; a child left empty (its fault failed, say, on unmapped
    /// memory) is retired like one an invalidation emptied, so probing
    /// remote operations cannot pile up children.
    override func releaseTable(_ table: UmemODP) {
        childrenLock.withLock {
            table.users -= 1
            if table.users == 0 && table.isEmpty { garbage[table.start] = table }
        }
    }

    /// From a child's invalidation that left it empty: free it later.
    func retire(_ child: UmemODP) {
        childrenLock.withLock { garbage[child.start] = child }
    }

    /// Frees retired children that are still empty and that nobody is
    /// using. One in use stays retired for a later pass; one refilled since
    /// is dropped from the list (whatever empties it again retires it
    /// again). A freed child leaves the table in the same critical section
    /// that marks it dead, so no one can find it afterwards.
    func collectGarbage() {
        let freed = childrenLock.withLock { () -> [UmemODP] in
            var freed: [UmemODP] = []
            for child in garbage.valuesInKeyOrder where child.users == 0 {
                garbage.removeValue(forKey: child.start)
                guard children[child.start] === child, child.retireIfEmpty() else { continue }
                children.removeValue(forKey: child.start)
                freed.append(child)
            }
            return freed
        }
        for child in freed { free(child) }
    }

    /// Removes a dead child's interval (no locks held: it waits for callbacks).
    private func free(_ child: UmemODP) {
        nic.host.removeInterval(child)
        nic.counters[.childrenFreed].bump()
        nic.counters[.implicitChildren].drop()
    }

    override func transfer(_ address: UInt64, write: Bool, _ buffer: UnsafeMutableRawBufferPointer) throws(PluginError) {
        collectGarbage()
        try transferOnDemand(address, write: write, buffer)
    }

    override func prefetch(_ first: UInt64, _ last: UInt64) throws(PluginError) {
        collectGarbage()
        try prefetchOnDemand(first, last)
    }

    override func release() {
        collectGarbage()
        let all = childrenLock.withLock { () -> [UmemODP] in
            defer {
                children.removeAll()
                garbage.removeAll()
            }
            return children.valuesInKeyOrder
        }
        for child in all {
            child.releaseAll()
            free(child)
        }
        nic.counters[.implicitRegions].drop()
    }
}
