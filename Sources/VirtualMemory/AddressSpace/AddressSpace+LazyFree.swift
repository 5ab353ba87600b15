import LabSync
import MMUNotifier

// MADV_FREE (Linux: madvise_free_single_vma, madvise_free_pte_range): the
// pages stay mapped but become clean and old and move to the file LRU;
// reclaim then discards them instead of swapping them, unless someone
// wrote them again in between (the PTE's dirty bit, or the frame's dirty
// flag that a device's set_dirty sets). A device that writes a lazily
// freed page through a writable translation and does not report it dirty
// loses its write when reclaim comes: the classic lazy-free bug.

extension AddressSpace {
    /// Marks the private anonymous pages of `[start, start + length)`
    /// lazily freed (Linux: `MADV_FREE`), under a `madviseFree`
    /// (CLEAR-type) invalidation of each VMA's part of the range: every
    /// secondary drops its translations, and one it takes again afterwards
    /// maps a clean page. Swap entries in the range are freed (their data
    /// is not needed any more). Pages another mapping shares (after fork),
    /// KSM pages, the zero page, and pages whose lock or swap-cache entry
    /// cannot be had at once are left as they are, as Linux leaves them.
    ///
    /// Fails with `invalidArgument` if the range holds a mapping that is
    /// not private anonymous memory (Linux: EINVAL), and with a
    /// segmentation fault if part of it is not mapped (Linux: ENOMEM);
    /// nothing is changed then.
    public func adviseFree(start: UInt64, length: UInt64) throws(MemoryError) {
        try checkRange(start, length)
        try mmapLock.withShared { () throws(MemoryError) in
            try checkAlive()
            let end = start + length
            guard covered(start, end) else { throw .segmentationFault(start) }
            let targets = vmas.filter { $0.end > start && $0.start < end }
            if let other = targets.first(where: { $0.kind != .anonymousPrivate }) {
                throw .invalidArgument("MADV_FREE applies to private anonymous memory, not to \(other)")
            }
            // A huge page freed in part is split first; one freed whole
            // stays whole (Linux: madvise_free_huge_pmd).
            splitHugePages(start, end, partialOnly: true)
            for vma in targets {
                let from = max(start, vma.start)
                let to = min(end, vma.end)
                var marked = 0
                invalidateBlocking(from, to, .madviseFree) { _, pte, released in
                    if pte.isSwap {
                        // free_swap_and_cache: the old data is not wanted.
                        released.swapSlots.append(pte.swapSlot)
                        pte = .none
                        return
                    }
                    if markLazilyFree(&pte) { marked += 1 }
                }
                machine.statistics.lazyFreed.add(marked, ordering: .relaxed)
            }
        }
    }

    /// The PTE part of MADV_FREE for one present PTE (page-table lock
    /// held): cleans and ages the PTE and marks its page lazily freed, if
    /// the page is an exclusive anonymous page whose lock can be had at
    /// once. Returns whether it marked the page.
    ///
    /// The frame's lock is taken (without waiting) for the whole change,
    /// so reclaim, which decides between swap and discard under that lock,
    /// never sees a page half marked; a page in the swap cache leaves it
    /// first (Linux: `folio_free_swap`), or is skipped if someone else
    /// still uses that entry.
    private func markLazilyFree(_ pte: inout PTE) -> Bool {
        guard pte.isAccessible, pte.frame != machine.zeroFrame else { return false }
        if pte.isHuge && memory.subpage(of: pte.frame) != 0 {
            // The folio is marked at its first entry; the others are only
            // cleaned and aged, if it was.
            let head = memory.head(of: pte.frame)
            if memory.flags(of: head).contains(.lazyFree) { pte = pte.with(dirty: false).with(accessed: false) }
            return false
        }
        let frame = memory.head(of: pte.frame)
        let flags = memory.flags(of: frame)
        guard flags.contains(.anonymous), !flags.contains(.ksm) else { return false }
        // Shared with another mapping (a forked child): Linux leaves it.
        guard memory.mapcount(of: frame) == 1, memory.tryLock(frame) else { return false }
        defer { memory.unlock(frame) }
        if memory.flags(of: frame).contains(.swapCache) {
            // References: this mapping's, the swap cache's, and pins.
            let pins = memory.pincount(of: frame)
            guard machine.swap.removeFromCacheIfUnused(frame, expectedReferences: 2 + pins, expectedMappings: 1, memory: memory) else {
                return false
            }
            memory.clearFlags(.swapCache, on: frame)
            memory.put(frame)  // the swap cache's reference; the mapping keeps it alive
        }
        memory.clearFlags(.dirty, on: frame)
        pte = pte.with(dirty: false).with(accessed: false)
        memory.node(of: frame).markLazyFree(frame, memory: memory)
        return true
    }
}
