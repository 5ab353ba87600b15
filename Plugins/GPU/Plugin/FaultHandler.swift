import DevicePluginKit

/// A replayable GPU page fault, as the hardware writes it to the fault
/// buffer. It holds its VM and binding, so a fault drained after a detach
/// still points at live objects (the handler then skips it).
struct GPUFault {
    let vm: GPUVM
    let binding: GPUBinding
    let address: UInt64
    let write: Bool
    /// How many times the access already replayed: a fault that keeps
    /// losing to invalidations settles for a smaller chunk.
    var replays = 0
}

/// The hardware's fault buffer: faulting accesses post here and wait to be
/// replayed; the fault handler drains it in batches. Bounded: when full, a
/// fault is dropped and its access simply faults again on replay.
final class FaultBuffer: @unchecked Sendable {
    // @unchecked: `entries` is guarded by `lock`, a spin lock (posting never sleeps).
    let capacity: Int
    private let lock: HostLock
    private let counters: GPUCounters
    private var entries: [GPUFault] = []
    /// Faults the handler could not service, for the accesses that posted them.
    private var errors: [FaultKey: PluginError] = [:]

    struct FaultKey: Hashable {
        let vm: ObjectIdentifier
        let page: UInt64
    }

    init(capacity: Int, host: Host, counters: GPUCounters) {
        precondition(capacity > 0, "a fault buffer needs room for one fault")
        self.capacity = capacity
        self.counters = counters
        lock = host.makeLock("gpu fault buffer", spin: true)
    }

    func push(_ fault: GPUFault) {
        lock.withLock {
            if entries.count < capacity { entries.append(fault) } else { counters[.faultBufferOverflows].add(1, ordering: .relaxed) }
        }
    }

    func drain() -> [GPUFault] {
        lock.withLock {
            defer { entries.removeAll(keepingCapacity: true) }
            return entries
        }
    }

    func record(_ error: PluginError, for fault: GPUFault) {
        lock.withLock { errors[FaultKey(vm: ObjectIdentifier(fault.vm), page: fault.address >> 12)] = error }
    }

    /// The error the handler met servicing the fault at `address`, if any (taken once).
    func takeError(_ vm: GPUVM, _ address: UInt64) -> PluginError? {
        lock.withLock { errors.removeValue(forKey: FaultKey(vm: ObjectIdentifier(vm), page: address >> 12)) }
    }
}

extension GPUVM {
    /// Services a batch of this VM's faults (the GPU's fault lock held):
    /// collects garbage first, then fills each range once; faults whose
    /// range an earlier one in the batch filled are replayed as they are.
    func service(_ batch: [GPUFault]) {
        collectGarbage()
        for fault in batch where !fault.binding.detached {
            if lock.withLock({ installedEntry(fault.address).map { !fault.write || $0.writable } ?? false }) { continue }
            do {
                try service(fault)
            } catch {
                gpu.counters[.faultErrors].add(1, ordering: .relaxed)
                gpu.faultBuffer.record(error, for: fault)
            }
        }
    }

    /// Replays of an access before its fault settles for smaller chunks.
    static let replaysBeforeSmallerChunks = 16

    /// Fills the range holding the fault's address: the canonical loop of
    /// `read_begin`, `fault_range`, lock, `read_retry`, install.
    private func service(_ fault: GPUFault) throws(PluginError) {
        var limit = SVMRange.chunkSizes[0]
        while true {
            let notifier = try ensureNotifier(fault.binding, fault.address)
            let svm = makeRange(notifier, fault.address, limit: limit)
            topUpTableCache()
            let seq = notifier.readBegin()
            let pfns: [PFN]
            do {
                pfns = try gpu.host.faultRange(
                    addressSpace: addressSpace, start: svm.start, length: svm.length, write: fault.write && fault.binding.writable)
            } catch {
                // Part of the chunk is not mapped (or not writable): retire the
                // range and try a smaller chunk; a 4 KiB one failing is the
                // access's own fault.
                lock.withLock {
                    if !svm.unmapped {
                        svm.unmapped = true
                        garbage.append(svm)
                    }
                }
                collectGarbage()
                guard svm.length > 4096 else { throw error }
                limit = SVMRange.chunkSizes.first { $0 < svm.length } ?? 4096
                continue
            }
            let installed = lock.withLock { () -> Bool in
                if notifier.readRetry(seq) || svm.unmapped { return false }
                return install(svm, pfns)
            }
            if installed {
                gpu.counters[.faults].add(1, ordering: .relaxed)
                return
            }
            gpu.counters[.faultRetries].add(1, ordering: .relaxed)
            // Forward progress: under memory pressure reclaim may invalidate
            // a large chunk faster than it can be faulted in (a controlled
            // schedule that runs kswapd whenever an allocation wakes it does
            // so every time). After a few replays the range is retired and
            // the fault tries the next smaller chunk, down to one page.
            guard fault.replays >= Self.replaysBeforeSmallerChunks, svm.length > 4096 else { return }
            lock.withLock {
                if !svm.unmapped {
                    svm.unmapped = true
                    garbage.append(svm)
                }
            }
            collectGarbage()
            limit = SVMRange.chunkSizes.first { $0 < svm.length } ?? 4096
        }
    }

    /// Installs a range's translations (VM lock held): one 2 MiB entry when
    /// the chunk is 2 MiB and every page has one permission, else 4 KiB
    /// entries. False if the table cache ran dry (the access replays).
    private func install(_ svm: SVMRange, _ pfns: [PFN]) -> Bool {
        if svm.mapped { zap(svm) }  // refill with the newer translations (a write upgrade)
        let ptes = pfns.map { GPUPTE(pfn: $0, writable: $0.isWritable) }
        var ok = true
        var freed: [UInt64] = []
        if svm.length == GPUPageTable.hugeSize, ptes.allSatisfy({ $0.writable == ptes[0].writable }) {
            ok = pageTable.installHuge(svm.start, ptes, cache: &tableCache, freed: &freed)
            if ok { gpu.counters[.hugeMappings].add(1, ordering: .relaxed) }
            // Backed by one huge page of the primary's (ABI 1.5 MMULAB_PFN_HUGE),
            // as nouveau maps 2 MiB where hmm_range_fault reports order 9.
            if ok && pfns.allSatisfy(\.isHuge) { gpu.counters[.hugeOverHugePages].add(1, ordering: .relaxed) }
        } else {
            for (i, pte) in ptes.enumerated() where ok {
                ok = pageTable.install(svm.start + UInt64(i) * 4096, pte, cache: &tableCache)
            }
        }
        recycle(freed)
        if !ok {
            // Nothing half-installed stays: what went in comes out.
            var dropped: [UInt64] = []
            _ = pageTable.clear(svm.start, svm.end, freed: &dropped)
            tlb.invalidate(svm.start, svm.end)
            recycle(dropped)
            gpu.counters[.tableCacheEmpty].add(1, ordering: .relaxed)
            return false
        }
        svm.mapped = true
        gpu.mappedRanges.add(1, ordering: .relaxed)
        return true
    }

    /// The notifier over the fault's region, inserted if missing. The
    /// insertion happens without the VM lock: it waits for invalidations in
    /// progress, whose callbacks take that lock.
    private func ensureNotifier(_ binding: GPUBinding, _ address: UInt64) throws(PluginError) -> SVMNotifier {
        let region = binding.region(of: address)
        if let existing = lock.withLock({ binding.notifiers[region.start] }) { return existing }
        let notifier = SVMNotifier(vm: self, binding: binding, start: region.start, end: region.end)
        try gpu.host.insertInterval(addressSpace: addressSpace, start: region.start, length: region.end - region.start, notifier)
        lock.withLock { binding.notifiers[region.start] = notifier }
        gpu.counters[.notifiersInserted].add(1, ordering: .relaxed)
        return notifier
    }

    /// The range holding `address`, made (chunked) if missing. A new range
    /// may overlap an unmapped one still in the notifier (retired, awaiting
    /// collection; or zapped by an invalidation, which waited for its work)
    /// and may replace one at the same start: neither has GPU work in flight
    /// (a range the fault path retires stays mapped, and so is returned
    /// here, until the collection zaps it, and the collection holds the
    /// fault lock until it has removed it), so no invalidation needs to find it.
    private func makeRange(_ notifier: SVMNotifier, _ address: UInt64, limit: UInt64) -> SVMRange {
        lock.withLock {
            if let existing = notifier.range(containing: address), !existing.unmapped { return existing }
            let (first, last) = notifier.binding.chunk(around: address, in: notifier, limit: limit)
            let svm = SVMRange(start: first, end: last, notifier: notifier)
            notifier.ranges[first] = svm
            gpu.counters[.rangesCreated].add(1, ordering: .relaxed)
            return svm
        }
    }

    /// Page-table pages for the next install, allocated before taking the
    /// VM lock (allocation may reclaim, and reclaim calls back into us).
    func topUpTableCache() {
        var missing = lock.withLock { max(0, 4 - tableCache.count) }
        var fresh: [UInt64] = []
        while missing > 0, let page = gpu.host.allocatePageTablePage() {
            fresh.append(page)
            missing -= 1
        }
        if !fresh.isEmpty { lock.withLock { recycle(fresh) } }
    }

    /// Removes unmapped ranges, and notifiers left with none (fault lock
    /// held). Notifier removal happens without the VM lock, like insertion.
    ///
    /// A range leaves its notifier only once no GPU work is in flight on
    /// it. The fault path retires a range that is still mapped (a larger
    /// chunk that could not be faulted whole, or one that kept losing to
    /// invalidations), with no invalidation of the primary's behind it, so
    /// accesses that translated through it before the zap may still be on
    /// their way, each holding the range's fence with its translation
    /// captured. An invalidation finds in-flight work only through the
    /// ranges of its notifier: were the range gone from there before its
    /// fences signalled, a later fork's write-protect (or mprotect, or
    /// unmap) of those pages would return at once and the old writable
    /// translation would land after it. So: zap, wait for the fences with
    /// the VM lock dropped (the range stays in its notifier, unmapped, so
    /// an invalidation meanwhile waits for the same work, or answers retry
    /// when it may not sleep), then remove. (xe's notifier, `xe_svm_invalidate`,
    /// waits for every fence of the VM's reservation object, so its work in
    /// flight is found whichever ranges exist; this GPU's fences are per
    /// range, so a range must stay findable until its fences signal.)
    func collectGarbage() {
        // 1. Zap (VM lock held): no access can take a fence on them after this.
        let retiring = lock.withLock { () -> [SVMRange] in
            for svm in garbage { zap(svm) }
            return garbage
        }
        guard !retiring.isEmpty else { return }
        // 2. Wait for work already in flight on them (the fault lock keeps
        //    the fault handler, and so any other collection, out meanwhile).
        if retiring.contains(where: { $0.fences.load(ordering: .acquiring) > 0 }) {
            gpu.counters[.rangesDrained].add(1, ordering: .relaxed)
            waitForFences(retiring)
        }
        // 3. Remove them. Invalidations may have added garbage meanwhile
        //    (zapped already, their work waited for): the next collection's.
        let emptied = lock.withLock { () -> [SVMNotifier] in
            var emptied: [SVMNotifier] = []
            for svm in retiring {
                assert(!svm.mapped && svm.fences.load(ordering: .acquiring) == 0, "a range left its notifier with GPU work in flight")
                let notifier = svm.notifier
                if notifier.ranges[svm.start] === svm { notifier.ranges.removeValue(forKey: svm.start) }
                if notifier.ranges.isEmpty, notifier.binding.notifiers[notifier.start] === notifier {
                    notifier.binding.notifiers.removeValue(forKey: notifier.start)
                    emptied.append(notifier)
                }
            }
            gpu.counters[.rangesCollected].add(UInt64(retiring.count), ordering: .relaxed)
            garbage.removeAll { svm in retiring.contains { $0 === svm } }
            return emptied
        }
        for notifier in emptied { gpu.host.removeInterval(notifier) }
    }
}
