import LabSync
import MMUNotifier

/// What an invalidation took out of the page table, to be released once
/// no secondary may reach it: after its range end, or earlier at a
/// gather's flush (see `TLBGather`).
struct Released {
    var frames: [Int32] = []
    var swapSlots: [Int] = []
    var devicePages: [DevicePage] = []

    var isEmpty: Bool { frames.isEmpty && swapSlots.isEmpty && devicePages.isEmpty }
}

/// When the secondary TLBs hear of the PTE change (Linux:
/// `mmu_notifier_arch_invalidate_secondary_tlbs`, called where the primary
/// flushes its own TLB).
enum TLBFlush {
    /// One flush of the range, under the page-table lock right after the
    /// PTEs changed (`ptep_clear_flush`, `flush_tlb_range`).
    case range
    /// Reclaim's deferred flush: x86's `arch_tlbbatch_add_pending` tells
    /// the secondary TLBs about the whole address space at once.
    case wholeSpace
    /// A zap's mmu_gather: a flush of what was zapped so far each time the
    /// batch fills (and the batch's pages are freed, inside the bracket),
    /// and one at the end.
    case gathered
}

extension AddressSpace {
    // MARK: - The one place the primary MMU invalidates

    /// Invalidates `[start, end)` in the order the contract requires
    /// (Andrea Arcangeli's TLB analogy, linux-kernel, January 2008, "Re:
    /// [kvm-devel] [PATCH] export notifier #1"): the range start goes to
    /// every secondary; then, under the page-table lock, `update` rewrites
    /// each PTE; the TLBs and secondary TLBs are flushed; the range end
    /// goes out; and what was unmapped is released. A page is never freed
    /// while a secondary that has not acknowledged the range may still
    /// reach it; with `.gathered`, pages are freed inside the bracket once
    /// every secondary has acknowledged, as Linux's zap does.
    ///
    /// For a non-blockable range the secondaries may refuse; nothing is
    /// changed then and the caller gets `InvalidationRefused`.
    func invalidate(
        _ start: UInt64, _ end: UInt64, _ event: NotifierEvent, blockable: Bool = true, owner: OwnerCookie? = nil,
        flush: TLBFlush = .range, file: StaticString = #fileID, line: UInt = #line,
        _ update: (UInt64, inout PTE, inout Released) -> Void
    ) throws(InvalidationRefused) {
        let range = InvalidationRange(addressSpace: id, start: start, end: end, event: event, blockable: blockable, owner: owner)
        if machine.faults.contains(.freeBeforeInvalidate) {
            // Fault injection: clear, free, and only then tell the secondaries.
            let tracked = InFlightInvalidation(range, ptl: ptl)
            var released = Released()
            rewrite(tracked, flush: .range, &released, update)
            release(released)
            let active = blockable ? notifiers.startInvalidation(range, file: file, line: line)
                : try notifiers.tryStartInvalidation(range, file: file, line: line)
            active.end()
            return
        }
        if event == .mprotect && machine.faults.contains(.skipMprotectInvalidation) {
            // Fault injection: the PTEs change with no range start or end
            // (only the secondary-TLB hook inside `rewrite` still runs).
            let tracked = InFlightInvalidation(range, ptl: ptl)
            var released = Released()
            rewrite(tracked, flush: flush, &released, update)
            release(released)
            return
        }
        let tracked = InFlightInvalidation(range, ptl: ptl)
        ptl.withLock { inFlight.append(tracked) }
        let active: ActiveInvalidation
        do {
            active = blockable ? notifiers.startInvalidation(range, recorder: tracked, file: file, line: line)
                : try notifiers.tryStartInvalidation(range, recorder: tracked, file: file, line: line)
        } catch {
            ptl.withLock { forget(tracked) }
            throw error
        }
        var released = Released()
        rewrite(tracked, flush: flush, &released, update)
        if machine.faults.contains(.skipRangeEnd) {
            _ = consume active  // dropped: the notifier core records it as unpaired
        } else {
            active.end()
        }
        ptl.withLock { forget(tracked) }
        release(released)
    }

    /// `invalidate` for a blockable range, which cannot be refused.
    func invalidateBlocking(
        _ start: UInt64, _ end: UInt64, _ event: NotifierEvent, owner: OwnerCookie? = nil, flush: TLBFlush = .range,
        file: StaticString = #fileID, line: UInt = #line,
        _ update: (UInt64, inout PTE, inout Released) -> Void
    ) {
        do {
            try invalidate(start, end, event, blockable: true, owner: owner, flush: flush, file: file, line: line, update)
        } catch {
            preconditionFailure("a blockable invalidation was refused: \(error)")
        }
    }

    /// Rewrites the range's PTEs with `update`, flushing as `flush` says.
    /// With `.gathered`, each full batch is flushed and released here,
    /// between page-table lock holds (Linux drops the PTL before
    /// `tlb_flush_mmu`), and what the last batch holds is left in
    /// `released` for after the range end.
    private func rewrite(
        _ tracked: InFlightInvalidation, flush: TLBFlush, _ released: inout Released, _ update: (UInt64, inout PTE, inout Released) -> Void
    ) {
        let range = tracked.range
        let last = (range.end + 4095) >> 12
        guard flush == .gathered else {
            ptl.withLock {
                pageTable.forEachEntry(from: range.start >> 12, to: last) { vpn, pte in
                    guard !pte.isNone else { return }
                    update(vpn << 12, &pte, &released)
                }
                tracked.rewritten = true
                // Where the primary flushes its TLB, right after the PTE change.
                notifiers.invalidateSecondaryTLBs(flush == .wholeSpace ? range.wholeSpace : range)
            }
            return
        }
        var gather = TLBGather()
        var next = range.start >> 12
        while true {
            let from = next
            next = ptl.withLock { () -> UInt64 in
                let stoppedAt = pageTable.forEachEntry(
                    from: from, to: last, until: { released.frames.count >= gather.capacity && gather.mustFlushWhenFull(memory: memory) }
                ) { vpn, pte in
                    guard !pte.isNone else { return }
                    update(vpn << 12, &pte, &released)
                }
                if stoppedAt == last { tracked.rewritten = true }
                return stoppedAt
            }
            // tlb_flush_mmu: the TLBs (and so the secondary TLBs) for what
            // was zapped since the last flush; then, if the batch is full,
            // its pages are freed while the range is still in progress.
            if next > from { notifiers.invalidateSecondaryTLBs(range.narrowed(to: from << 12, next << 12)) }
            if next == last { return }
            release(released)
            released = Released()
        }
    }

    /// Removes `tracked` from the in-flight list (page-table lock held).
    private func forget(_ tracked: InFlightInvalidation) {
        ptl.assertHeld()
        if let index = inFlight.firstIndex(where: { $0 === tracked }) { inFlight.remove(at: index) }
    }

    /// Puts what an invalidation unmapped, once no secondary may reach it.
    /// A swap-cache page nobody maps or swaps to any more leaves the swap
    /// cache too, or it would never be freed.
    func release(_ released: Released) {
        var plain: [Int32] = []
        plain.reserveCapacity(released.frames.count)
        for frame in released.frames {
            let lastMapping = memory.mapcount(of: frame) == 0 && memory.flags(of: frame).contains(.swapCache)
            if lastMapping && memory.tryGet(frame) {
                memory.put(frame)  // the mapping's reference
                machine.dropSwapCacheIfUnused(frame, holding: true)
            } else {
                plain.append(frame)
            }
        }
        memory.put(plain)
        for slot in released.swapSlots {
            if let cached = machine.swap.release(slot), memory.tryGet(cached) {
                machine.dropSwapCacheIfUnused(cached, holding: true)
            }
        }
        for page in released.devicePages { machine.deviceMemory(of: page)!.free(page) }
    }

    /// The common `update` for a zap: the PTE goes away, its dirty bit
    /// moves to the frame, its mapping is dropped (the reference is put
    /// later, by `release`), a swap entry's slot is released. The zero
    /// page is nobody's: its entry just goes.
    ///
    /// A huge page's 512 entries are zapped together (callers split a huge
    /// page they cover in part first): the folio's mapping count and
    /// reference go with its last entry, so a zap that stops part way
    /// through (a gather's flush) frees nothing still mapped.
    func zap(_ pte: inout PTE, _ released: inout Released) {
        if pte.isPresent && pte.isHuge {
            if pte.isDirty { memory.setFlags(.dirty, on: pte.frame) }
            if memory.subpage(of: pte.frame) == PhysicalMemory.hugePages - 1 {
                let head = memory.head(of: pte.frame)
                memory.removeMapping(head)
                released.frames.append(head)
            }
            residentPages.subtract(1, ordering: .relaxed)
        } else if pte.isPresent {
            if pte.frame != machine.zeroFrame {
                if pte.isDirty { memory.setFlags(.dirty, on: pte.frame) }
                memory.removeMapping(pte.frame)
                released.frames.append(pte.frame)
                residentPages.subtract(1, ordering: .relaxed)
            }
        } else if pte.isSwap {
            released.swapSlots.append(pte.swapSlot)
        } else if pte.isDevicePrivate {
            released.devicePages.append(pte.devicePage)
        }
        pte = .none
    }
}

extension InvalidationRange {
    /// The same invalidation over the whole address space (what x86's
    /// deferred reclaim flush tells the secondary TLBs).
    var wholeSpace: InvalidationRange {
        InvalidationRange(addressSpace: addressSpace, start: 0, end: .max, event: event, blockable: blockable, owner: owner)
    }

    /// The same invalidation over `[start, end)` (a gather's partial flush).
    func narrowed(to start: UInt64, _ end: UInt64) -> InvalidationRange {
        InvalidationRange(
            addressSpace: addressSpace, start: max(start, self.start), end: min(end, self.end), event: event, blockable: blockable, owner: owner)
    }
}
