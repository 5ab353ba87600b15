import DevicePluginKit
import Synchronization

/// The translation table of an on-demand-paging region, or of one child of
/// an implicit region (Linux: `ib_umem_odp` with its `pfn_list`), and the
/// interval notifier that keeps it coherent. Pages are filled on demand by
/// the canonical loop and emptied by invalidations.
///
/// Per page the table holds the translation, whether the NIC wrote through
/// it (reported dirty when the translation goes, as Linux's
/// ib_umem_odp_unmap_dma_pages does) and how many DMA transfers are using
/// it now.
final class UmemODP: IntervalSubscription, @unchecked Sendable {
    // @unchecked: the arrays are guarded by `lock` (and `mappedPages` is
    // changed only under it);
    // `users` by the parent's children lock; `dead` is atomic; the rest is
    // immutable.
    unowned let nic: NIC
    let addressSpace: UInt64
    let start: UInt64
    let end: UInt64
    let writable: Bool
    /// The implicit region this is a child of, if any.
    unowned(unsafe) let parent: ImplicitODPRegion?
    /// Linux: `umem_odp->umem_mutex`. A sleeping lock: the fault path
    /// installs under it and the invalidation zaps under it.
    let lock: HostLock
    private var entries: [PFN?]
    private var written: [Bool]
    private var inFlight: [UInt32]
    /// Entries present; changed under `lock`, readable anywhere as a hint.
    let mappedPages = Atomic<Int>(0)
    /// Whether the table is empty now (a hint unless `lock` is held).
    var isEmpty: Bool { mappedPages.load(ordering: .relaxed) == 0 }
    /// Collected (implicit children only): nothing may be installed any more.
    let dead = Atomic<Bool>(false)
    /// Operations using this child of an implicit region now (guarded by
    /// the parent's children lock): a child in use is not freed.
    var users = 0

    init(nic: NIC, addressSpace: UInt64, start: UInt64, end: UInt64, writable: Bool, parent: ImplicitODPRegion?) {
        self.nic = nic
        self.addressSpace = addressSpace
        self.start = start
        self.end = end
        self.writable = writable
        self.parent = parent
        lock = nic.host.makeLock("rdma umem_mutex", spin: false)
        let pages = Int((end - start) / 4096)
        entries = Array(repeating: nil, count: pages)
        written = Array(repeating: false, count: pages)
        inFlight = Array(repeating: 0, count: pages)
        super.init()
    }

    private func index(_ address: UInt64) -> Int { Int((address - start) / 4096) }

    // MARK: - The invalidation (mlx5_ib_invalidate_range)

    /// mlx5's policy: a range that may not sleep always gets retry (the
    /// region's mutex is a sleeping lock and the zap waits for the device).
    /// A blockable one takes the mutex, sets the sequence, zaps the
    /// entries and reports the pages the NIC wrote dirty, all under the
    /// mutex (as `mlx5_ib_invalidate_range` does `ib_umem_odp_unmap_dma_pages`
    /// under `umem_mutex`), then waits for DMA in flight on them to drain.
    ///
    /// Why the dirty report is under the mutex: another invalidation of
    /// the same pages (a migration racing an mprotect, say) finds the
    /// entries already gone and returns as soon as the DMA has drained;
    /// reporting dirty after dropping the mutex let that migration copy a
    /// page the primary believed clean, and the NIC's write was lost with
    /// the old frame (found by the lab's register-race once a swapped-in
    /// page is mapped writable but clean, as Linux maps it).
    override func invalidate(range: InvalidationRange, currentSeq: UInt64) -> Bool {
        guard range.isBlockable else {
            // The OOM reaper must not wait for us; it skips the range and
            // comes back (mlx5_ib_invalidate_range returns false here too).
            // Fail fast, touch nothing.
            nic.counters[.nonBlockableRetries].bump()
            return false
        }
        nic.counters[.invalidations].bump()
        let first = max(start, range.start & ~4095)
        let last = min(end, range.end)
        guard first < last else {
            lock.withLock { setSeq(currentSeq) }
            return true
        }
        let pages = index(first)..<index(last - 1) + 1
        let (emptied, busy) = lock.withLock { () -> (Bool, Bool) in
            setSeq(currentSeq)
            var zapped: UInt64 = 0
            var dirtied: UInt64 = 0
            for i in pages {
                guard let pfn = entries[i] else { continue }
                if written[i] {
                    nic.host.setDirty(pfn)  // a write still in flight lands on a page already marked dirty
                    dirtied += 1
                }
                entries[i] = nil
                written[i] = false
                zapped += 1
            }
            let left = mappedPages.subtract(Int(zapped), ordering: .relaxed).newValue
            nic.counters[.pagesZapped].bump(zapped)
            nic.counters[.pagesDirtied].bump(dirtied)
            return (left == 0, inFlight[pages].contains { $0 > 0 })
        }
        // No new transfer can start on the range now (its entries are gone
        // and a new fault waits in read_begin until the range ends); the
        // ones already started must finish before the pages may go. A
        // second invalidation of these pages waits here too, whoever zapped.
        if busy { waitForDrain(pages) }
        // An implicit child left empty is freed later, outside the callback
        // (removing an interval waits for callbacks: mlx5 defers it to a work).
        if emptied, let parent { parent.retire(self) }
        return true
    }

    /// [blockable] Sleeps until no transfer is in flight on `pages`.
    private func waitForDrain(_ pages: Range<Int>) {
        nic.counters[.drainWaits].bump()
        repeat {
            nic.host.sleep(nanoseconds: 2_000)
        } while lock.withLock({ inFlight[pages].contains { $0 > 0 } })
    }

    // MARK: - DMA

    /// The translation for a transfer at `address`, counted in flight (and
    /// the page marked written for a write), or nil if the NIC must fault.
    func beginTransfer(_ address: UInt64, write: Bool) -> PFN? {
        lock.withLock {
            let i = index(address)
            guard !dead.load(ordering: .acquiring), let pfn = entries[i], !write || pfn.isWritable else { return nil }
            inFlight[i] += 1
            if write { written[i] = true }
            return pfn
        }
    }

    func endTransfer(_ address: UInt64) {
        lock.withLock { inFlight[index(address)] -= 1 }
    }

    // MARK: - The page fault (the canonical loop)

    /// Fills the translations of `[first, last)`: `read_begin`, fault the
    /// range through the host, take the mutex, `read_retry`, install.
    /// Returns false when an invalidation got in between (the caller
    /// retries the transfer, as mlx5 retries the faulting WQE).
    func fault(_ first: UInt64, _ last: UInt64, write: Bool) throws(PluginError) -> Bool {
        precondition(first >= start && last <= end && first < last, "fault outside the umem")
        let seq = readBegin()
        let pfns = try nic.host.faultRange(addressSpace: addressSpace, start: first, length: last - first, write: write)
        let installed = lock.withLock { () -> Bool in
            if dead.load(ordering: .acquiring) || readRetry(seq) { return false }
            for (offset, pfn) in pfns.enumerated() {
                let i = index(first) + offset
                if entries[i] == nil { mappedPages.add(1, ordering: .relaxed) }
                entries[i] = pfn
            }
            return true
        }
        if installed {
            nic.counters[.pageFaults].bump()
            nic.counters[.pagesFaulted].bump(UInt64(pfns.count))
        } else {
            nic.counters[.faultRetries].bump()
        }
        return installed
    }

    // MARK: - Teardown

    /// Marks an implicit child dead if it is empty and idle; returns whether it did.
    func retireIfEmpty() -> Bool {
        lock.withLock {
            guard mappedPages.load(ordering: .relaxed) == 0, !inFlight.contains(where: { $0 > 0 }) else { return false }
            dead.store(true, ordering: .releasing)
            return true
        }
    }

    /// Deregistration, before the interval is removed and with no transfer
    /// left: reports what the NIC wrote dirty and drops every entry, under
    /// the mutex so no invalidation runs meanwhile and every entry is still
    /// valid (Linux: `ib_umem_odp_release` unmaps the DMA pages, then
    /// removes the notifier).
    func releaseAll() {
        let dirtied = lock.withLock { () -> UInt64 in
            precondition(!inFlight.contains { $0 > 0 }, "releasing a umem with DMA in flight")
            dead.store(true, ordering: .releasing)
            var dirtied: UInt64 = 0
            for i in entries.indices {
                if let pfn = entries[i], written[i] {
                    nic.host.setDirty(pfn)
                    dirtied += 1
                }
                entries[i] = nil
                written[i] = false
            }
            mappedPages.store(0, ordering: .relaxed)
            return dirtied
        }
        nic.counters[.pagesDirtied].bump(dirtied)
    }
}
