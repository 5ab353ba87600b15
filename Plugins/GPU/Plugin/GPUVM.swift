import CDevicePluginABI
import DevicePluginKit
import Synchronization

/// The GPU's view of one address space (a GPU VM with SVM: GPU virtual
/// addresses equal the CPU's): its page table, TLB, bindings, notifiers and
/// ranges, and the fault handler that fills them.
///
/// Locks, outermost first:
/// - the GPU's `faultLock` (sleeping): the fault handler. Servicing faults,
///   collecting garbage, migrating and detaching take it, so the structure
///   of bindings, notifiers and ranges changes in one thread at a time.
/// - `lock` (sleeping, the VM lock): the page table, TLB and range state.
///   Notifier callbacks take it (try-lock when they may not sleep), so it is
///   never held across a host call that may fault, reclaim or wait for an
///   invalidation: `fault_range`, `alloc_page_table_page`, interval insert
///   and remove, migration.
final class GPUVM: @unchecked Sendable {
    // @unchecked: everything mutable is guarded by `lock` or `faultLock` as above.
    unowned let gpu: GPU
    let addressSpace: UInt64
    let lock: HostLock
    var pageTable: GPUPageTable
    var tlb: DeviceTLB
    var bindings: [GPUBinding] = []
    /// Ranges the CPU unmapped, for the garbage collector.
    var garbage: [SVMRange] = []
    /// Page-table pages allocated ahead, outside the lock.
    var tableCache: [UInt64] = []
    var clock: UInt64 = 1
    /// Its page table went back to the host (the last binding was detached).
    var tornDown = false

    init(gpu: GPU, addressSpace: UInt64, rootTable: UInt64) {
        self.gpu = gpu
        self.addressSpace = addressSpace
        lock = gpu.host.makeLock("gpu vm \(addressSpace)", spin: false)
        pageTable = GPUPageTable(rootBacking: rootTable)
        tlb = DeviceTLB(capacity: gpu.configuration.tlbEntries, counters: gpu.counters)
    }

    func binding(containing address: UInt64) -> GPUBinding? { bindings.first { $0.contains(address) && !$0.detached } }

    // MARK: - Invalidation (the interval notifier callback)

    /// [range-dependent] The primary changed `range`: zap every overlapping
    /// SVM range (whole: ranges are never split), flush the TLB, move dirty
    /// bits to the primary, and wait for in-flight GPU work on them. In a
    /// non-blockable range nothing may wait, so a contended VM lock or a
    /// busy range answers retry (drm_gpusvm and amdgpu do the same).
    func invalidate(_ notifier: SVMNotifier, _ range: InvalidationRange, _ seq: UInt64) -> Bool {
        // Our own migration: the migrating code already dropped our
        // translations of the range (test_hmm's dmirror_interval_invalidate).
        if range.event == MMULAB_EVENT_MIGRATE.rawValue, range.owner == gpu.owner {
            gpu.counters[.ownMigrationsSkipped].add(1, ordering: .relaxed)
            return true
        }
        // Our own page taken exclusive for an atomic (nouveau's
        // svm_range_invalidate): the frame stays, and the atomic path maps
        // it once this returns. The CPU taking it back carries no owner.
        if range.event == MMULAB_EVENT_EXCLUSIVE.rawValue, range.owner == gpu.owner {
            gpu.counters[.ownExclusiveSkipped].add(1, ordering: .relaxed)
            return true
        }
        if range.isBlockable {
            lock.lock()
        } else if !lock.tryLock() {
            gpu.counters[.nonBlockableRetries].add(1, ordering: .relaxed)
            return false
        }
        let overlapping = notifier.ranges.filter { $0.value.overlaps(range.start, range.end) }.valuesInKeyOrder  // sorts only the few that overlap
        if !range.isBlockable, overlapping.contains(where: { $0.fences.load(ordering: .acquiring) > 0 }) {
            lock.unlock()
            gpu.counters[.nonBlockableRetries].add(1, ordering: .relaxed)
            return false
        }
        notifier.setSeq(seq)
        let unmapping = range.event == MMULAB_EVENT_MUNMAP.rawValue || range.event == MMULAB_EVENT_EXIT.rawValue
        for svm in overlapping {
            zap(svm)
            if unmapping && !svm.unmapped {
                svm.unmapped = true
                garbage.append(svm)
            }
        }
        lock.unlock()
        gpu.counters[.invalidations].add(1, ordering: .relaxed)
        if range.isBlockable { waitForFences(overlapping) }
        return true
    }

    /// Drops a range's translations (VM lock held): page table, then TLB,
    /// then the dirty bits go to the primary (the dirty state must transfer
    /// before the device lets go: Andrea Arcangeli, linux-kernel/kvm-devel,
    /// 2008-01-24, "Re: [kvm-devel] [PATCH] export notifier #1").
    func zap(_ svm: SVMRange) {
        guard svm.mapped else { return }
        var freed: [UInt64] = []
        let cleared = pageTable.clear(svm.start, svm.end, freed: &freed)
        tlb.invalidate(svm.start, svm.end)
        assert(!tlb.covers(svm.start, svm.end), "the TLB still holds a zapped range")
        for pte in cleared where pte.dirty && !pte.pfn.isDevicePrivate { gpu.host.setDirty(pte.pfn) }
        recycle(freed)
        svm.mapped = false
        gpu.mappedRanges.subtract(1, ordering: .relaxed)
    }

    /// Returns freed table pages to the cache, the rest to the host (VM lock held).
    func recycle(_ pages: [UInt64]) {
        for page in pages {
            if tableCache.count < 8 { tableCache.append(page) } else { gpu.host.freePageTablePage(page) }
        }
    }

    /// Waits (blockable callers only) until no GPU work is in flight on the ranges.
    func waitForFences(_ ranges: [SVMRange]) {
        for svm in ranges {
            var rounds = 0
            while svm.fences.load(ordering: .acquiring) > 0 {
                if rounds == 0 { gpu.counters[.fenceWaits].add(1, ordering: .relaxed) }
                rounds += 1
                precondition(rounds < 5_000_000, "a GPU fence never signalled")
                gpu.host.sleep(nanoseconds: 5_000)
            }
        }
    }

    // MARK: - Device access

    /// The GPU reads or writes the page at `address`: through the TLB, or a
    /// page-table walk that fills it, or a replayable fault that the fault
    /// handler services before the access is replayed.
    ///
    /// An atomic (`atomic`, with `write`) goes only through an entry the
    /// GPU took exclusive (`make_exclusive`): with a writable entry in
    /// place, the fault handler takes the page exclusive and maps it so;
    /// without one, the access faults for a write first.
    func access(
        _ binding: GPUBinding, _ address: UInt64, write: Bool, atomic: Bool = false, _ buffer: UnsafeMutableRawBufferPointer
    ) throws(PluginError) {
        for attempt in 0..<10_000 {
            lock.lock()
            let entry = translate(address)
            if let (pte, svm) = entry, !write || pte.writable, !atomic || pte.exclusive {
                // The fence: the invalidation of this range waits for it.
                svm.fences.add(1, ordering: .acquiring)
                svm.lastUse = clock
                if write && !pte.dirty { noteWrite(address) }
                lock.unlock()
                gpu.counters[.workInFlight].add(1, ordering: .relaxed)
                if gpu.configuration.workMicroseconds > 0 { gpu.host.sleep(nanoseconds: UInt64(gpu.configuration.workMicroseconds) * 1_000) }
                if write {
                    gpu.host.dmaWrite(addressSpace: addressSpace, pte.pfn, from: UnsafeRawBufferPointer(buffer))
                    gpu.counters[.dmaWrites].add(1, ordering: .relaxed)
                } else {
                    gpu.host.dmaRead(addressSpace: addressSpace, pte.pfn, into: buffer)
                    gpu.counters[.dmaReads].add(1, ordering: .relaxed)
                }
                if !pte.pfn.isDevicePrivate { gpu.host.markAccessed(pte.pfn) }
                if atomic { gpu.counters[.atomics].add(1, ordering: .relaxed) }
                gpu.counters[.workInFlight].subtract(1, ordering: .relaxed)
                svm.fences.subtract(1, ordering: .releasing)
                return
            }
            let needsExclusive = atomic && entry.map { $0.0.writable && !$0.0.pfn.isDevicePrivate } == true
            lock.unlock()
            if attempt > 0 { gpu.counters[.replays].add(1, ordering: .relaxed) }
            if attempt > 8 { gpu.host.sleep(nanoseconds: 20_000) }  // let an invalidation or migration finish
            if needsExclusive {
                try gpu.faultLock.withLock { () throws(PluginError) in try takeExclusive(binding, address) }
                continue
            }
            gpu.faultBuffer.push(GPUFault(vm: self, binding: binding, address: address & ~4095, write: write, replays: attempt))
            gpu.serviceFaults()
            if let error = gpu.faultBuffer.takeError(self, address) { throw error }
        }
        throw .busy("the GPU could not fault 0x\(String(address, radix: 16)) in")
    }

    /// The entry for `address` and its range, as the GPU's access sees it
    /// (VM lock held): TLB first, then a walk that fills the TLB.
    func translate(_ address: UInt64) -> (GPUPTE, SVMRange)? {
        guard let svm = mappedRange(containing: address) else { return nil }
        if let pte = tlb.lookup(address) { return (pte, svm) }
        guard let (pte, huge) = pageTable.lookup(address) else { return nil }
        tlb.fill(address, pte, huge: huge)
        return (pte, svm)
    }

    /// The page-table entry for `address`, for the fault handler's own
    /// checks (VM lock held): no TLB lookup or fill, so the TLB's counters
    /// count only the GPU's accesses.
    func installedEntry(_ address: UInt64) -> GPUPTE? {
        guard mappedRange(containing: address) != nil else { return nil }
        return pageTable.lookup(address)?.pte
    }

    private func mappedRange(containing address: UInt64) -> SVMRange? {
        guard let binding = binding(containing: address),
            let notifier = binding.notifiers[binding.region(of: address).start],
            let svm = notifier.range(containing: address), svm.mapped
        else { return nil }
        return svm
    }

    /// Takes the page at `address` exclusive and maps it so (the GPU's fault
    /// lock held, as any fault service): `read_begin` on the range's
    /// notifier, `make_exclusive` with the GPU's owner (its own conversion
    /// is skipped by `invalidate`), then, under the VM lock, the exclusive
    /// entry replaces the page's entry if no invalidation raced. A range
    /// that went meanwhile leaves the access to fault again.
    private func takeExclusive(_ binding: GPUBinding, _ address: UInt64) throws(PluginError) {
        let page = address & ~4095
        guard !binding.detached, let (notifier, svm) = lock.withLock({ () -> (SVMNotifier, SVMRange)? in
            guard let notifier = binding.notifiers[binding.region(of: page).start], let svm = notifier.range(containing: page),
                svm.mapped, !svm.unmapped
            else { return nil }
            return (notifier, svm)
        }) else { return }
        topUpTableCache()
        let seq = notifier.readBegin()
        let pfn = try gpu.host.makeExclusive(addressSpace: addressSpace, address: page, owner: gpu.owner)
        lock.withLock {
            guard !notifier.readRetry(seq), svm.mapped, !svm.unmapped, notifier.range(containing: page) === svm,
                pageTable.install(page, GPUPTE(pfn: pfn, writable: true, exclusive: true), cache: &tableCache)
            else {
                gpu.counters[.exclusiveRetries].add(1, ordering: .relaxed)
                return
            }
            tlb.invalidate(page, page + 4096)
            gpu.counters[.exclusiveTaken].add(1, ordering: .relaxed)
        }
    }

    /// Sets the dirty bit for a write (VM lock held, before the DMA).
    func noteWrite(_ address: UInt64) {
        pageTable.markDirty(address)
        if let (pte, huge) = pageTable.lookup(address) { tlb.fill(address, pte, huge: huge) }
    }
}
