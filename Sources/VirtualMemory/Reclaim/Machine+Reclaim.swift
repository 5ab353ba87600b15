import LabSync
import MMUNotifier
import Synchronization

/// Reclaim on the machine: kswapd's start and stop, direct reclaim from
/// the allocator, and the shrink of one node (`shrink_node`). The
/// background thread itself is `Reclaimer`.
extension Machine {
    /// Starts the background reclaimer (kswapd). Tests and the lab start it;
    /// without it, only direct reclaim runs.
    public func startBackgroundReclaim() {
        let reclaimer = reclaimerBox.withLock { box -> Reclaimer in
            if let existing = box { return existing }
            let made = Reclaimer(machine: self)
            box = made
            return made
        }
        reclaimer.start()
    }

    /// Stops the background reclaimer.
    public func stopBackgroundReclaim() {
        reclaimerBox.withLock { $0 }?.stop()
    }

    var reclaimer: Reclaimer? { reclaimerBox.withLock { $0 } }

    /// Direct reclaim from an allocating thread; returns frames freed.
    func reclaimDirectly() -> Int {
        sync.withReclaim {
            var freed = 0
            for node in memory.nodes { freed += shrink(node, target: Reclaimer.batch) }
            return freed
        }
    }

    /// Frees up to `target` frames from `node`'s LRU lists, then asks the
    /// shrinkers for the same fraction of their caches. Returns frames freed.
    ///
    /// One call looks at each inactive frame at most once: a frame in use
    /// (CPU or device accessed bit) is rotated to the active list with its
    /// bits cleared, and gets a second chance until a later call finds it
    /// unused. Each call first refills the inactive lists from the cold end
    /// of the active ones when those are longer (Linux: `shrink_active_list`
    /// keeping the inactive list large enough). Callers that freed nothing
    /// call again, as Linux lowers its scan priority.
    @discardableResult
    public func shrink(_ node: MemoryNode, target: Int) -> Int {
        let before = node.lruCounts
        for anonymous in [true, false] {
            let active = before[anonymous ? .activeAnonymous : .activeFile] ?? 0
            let inactive = before[anonymous ? .inactiveAnonymous : .inactiveFile] ?? 0
            if active > inactive { _ = node.deactivate((active - inactive + 1) / 2, anonymous: anonymous, memory: memory) }
        }
        let counts = node.lruCounts
        let budget = (counts[.inactiveAnonymous] ?? 0) + (counts[.inactiveFile] ?? 0)
        var freed = 0
        var scanned = 0
        var preferFile = true
        while freed < target, scanned < budget {
            let order: [LRUList] = preferFile ? [.inactiveFile, .inactiveAnonymous] : [.inactiveAnonymous, .inactiveFile]
            preferFile.toggle()
            let room = min(Reclaimer.batch, budget - scanned)
            var batch = node.isolate(room, from: order[0], memory: memory)
            if batch.isEmpty { batch = node.isolate(room, from: order[1], memory: memory) }
            if batch.isEmpty { break }
            for frame in batch {
                scanned += 1
                if reclaim(isolated: frame) { freed += 1 }
            }
        }
        if scanned > 0 {
            let eligible = max(counts.values.reduce(0, +), 1)
            _ = shrinkers.shrink(scanned: scanned, eligible: eligible, canBlock: true)
        }
        return freed
    }

    /// Tries to reclaim the pages mapped at `[start, start + length)` now
    /// (Linux: `MADV_PAGEOUT`). Returns how many were freed.
    @discardableResult
    public func pageOut(_ space: AddressSpace, start: UInt64, length: UInt64) throws(MemoryError) -> Int {
        try space.checkRange(start, length)
        var frames: [Int32] = []
        space.mmapLock.withShared {
            // Huge pages there are split first, to go out page by page
            // (Linux splits a THP it pages out to swap).
            space.splitHugePages(start, start + length, partialOnly: false, zeroUnused: true)
            space.ptl.withLock {
                space.pageTable.forEachEntry(from: start >> 12, to: (start + length) >> 12) { _, pte in
                    // A huge page once, by its head (it is on the LRU as one).
                    guard pte.isPresent else { return }
                    let head = memory.head(of: pte.frame)
                    if frames.last != head { frames.append(head) }
                }
            }
        }
        var freed = 0
        for frame in frames {
            // Only a frame this call took off the LRU itself: one that is off
            // it is someone else's (reclaim, migration) or not reclaimable.
            guard memory.node(of: frame).isolate(frame, memory: memory) else { continue }
            // MADV_PAGEOUT ignores the accessed bits: the caller says it is cold.
            if reclaim(isolated: frame, ignoreReferences: true) { freed += 1 }
        }
        return freed
    }

    /// Reclaims one isolated frame (off the LRU, one reference held by the
    /// caller, which this consumes). Returns whether the frame was freed.
    func reclaim(isolated frame: Int32, ignoreReferences: Bool = false) -> Bool {
        let node = memory.node(of: frame)
        guard memory.tryLock(frame) else {
            node.putBack(frame, memory: memory, active: false)
            memory.put(frame)
            return false
        }
        let evicted = evict(frame, ignoreReferences: ignoreReferences)
        // Unlock before the last put: a freed frame must not be unlocked.
        memory.unlock(frame)
        switch evicted {
        case .evicted:
            return memory.put(frame)  // the isolation reference: the last one
        case .kept(let active):
            node.putBack(frame, memory: memory, active: active)
            memory.put(frame)
            return false
        }
    }

    private enum Eviction { case evicted, kept(active: Bool) }

    /// The body of `reclaim(isolated:)`, with the frame locked. `known`:
    /// the mappings a young check already found (a huge page's, checked
    /// whole before its split), the only ones to unmap.
    private func evict(_ frame: Int32, ignoreReferences: Bool, checked known: MappingKeys? = nil) -> Eviction {
        let flags = memory.flags(of: frame)
        // Linux's `shrink_folio_list` keeps a pinned anonymous page before
        // giving it a swap slot. One already in the swap cache, and a file
        // page, go on to be unmapped: the secondaries are told, then
        // `try_to_unmap_one` restores a pinned anonymous page's PTE, and a
        // pinned file page, unmapped, fails the reference check below.
        if memory.pincount(of: frame) > 0 && flags.contains(.anonymous) && !flags.contains(.swapCache) {
            statistics.pinnedSkips.add(1, ordering: .relaxed)
            return .kept(active: true)
        }
        if flags.contains(.ksm) || flags.contains(.devicePageTable) { return .kept(active: true) }
        if flags.contains(.huge) {
            // A huge page is aged as one (its 512 accessed bits, the
            // devices' young bits over its 2 MiB); a cold one is split to
            // be swapped out (Linux splits a THP it cannot swap whole):
            // its other pages go on the inactive list, this one goes on.
            var checked: MappingKeys? = nil
            if !ignoreReferences {
                let (used, mapped) = checkHugeReferences(frame)
                if used { return .kept(active: true) }
                checked = mapped  // the blocks, where the head page is mapped
            }
            splitHugeFolio(frame, zeroUnused: true)
            // A page of zeroes is now the zero page's mapping: nothing to swap.
            if memory.mapcount(of: frame) == 0 { return .evicted }
            return evict(frame, ignoreReferences: true, checked: checked)
        }
        // The mappings the young check found (nil: MADV_PAGEOUT, which asks
        // nobody, unmaps every mapping of the frame).
        var checked = known
        if !ignoreReferences {
            let (used, mapped) = checkReferences(frame)
            if used { return .kept(active: true) }
            checked = mapped
        }

        let anonymous = flags.contains(.anonymous)
        // Marked and unmarked only under the frame lock, which we hold, and
        // never in the swap cache (MADV_FREE takes it out first).
        let lazy = anonymous && flags.contains(.lazyFree)
        assert(!(lazy && flags.contains(.swapCache)), "frame \(frame) is lazily freed and in the swap cache")
        if lazy { return discardLazilyFreed(frame, checked: checked) }
        var slot: Int? = nil
        if anonymous {
            slot = swap.slot(of: frame)
            if slot == nil {
                guard let fresh = swap.addToCache(frame) else { return .kept(active: true) }  // swap is full
                memory.get(frame)
                // Dirty, as Linux's `add_to_swap` marks it: the new slot
                // holds nothing of this page yet (a former page's bytes,
                // maybe) until it is written. If this eviction stops short
                // of the write (a fault maps the page again), the page stays
                // in the swap cache linked to the slot; it must still be
                // written whenever it is next evicted, even if nobody dirties
                // it meanwhile. (Trusting the unwritten slot gave a page
                // another address space's old data: a cross-address-space
                // leak on a CPU read.)
                memory.setFlags([.swapCache, .dirty], on: frame)
                slot = fresh
            }
        }
        forEachMapping(of: frame) { space, address in
            // Only the mappings the young check looked at (Linux holds the
            // folio lock from `folio_referenced` to `try_to_unmap`, so no
            // fault maps the page in between; the model's swap-in maps a
            // swap-cache frame without the frame's lock). Every vmscan
            // invalidation of a page so follows a young check of it, and a
            // frame mapped nowhere gets none (Linux: `shrink_folio_list`
            // calls `try_to_unmap` only if `folio_mapped`). A mapping made
            // since stays, and the frame with it (the mapcount test below).
            if let checked, !checked.contains(MappingKey(space: space.id, address: address)) { return }
            space.invalidateBlocking(address, address + 4096, .vmscan, flush: .wholeSpace) { _, pte, released in
                guard pte.isPresent, pte.frame == frame else { return }
                // A pinned anonymous page cannot be unshared: its PTE stays.
                if anonymous && memory.pincount(of: frame) > 0 {
                    statistics.pinnedSkips.add(1, ordering: .relaxed)
                    return
                }
                if pte.isDirty { memory.setFlags(.dirty, on: frame) }
                memory.removeMapping(frame)
                released.frames.append(frame)
                space.residentPages.subtract(1, ordering: .relaxed)
                if let slot {
                    swap.retain(slot)
                    pte = PTE.swap(slot: slot).with(uffdWP: pte.isUffdWP)
                } else {
                    pte = .none
                }
            }
        }
        guard memory.mapcount(of: frame) == 0 else { return .kept(active: false) }  // a fault mapped it again

        if anonymous, let slot {
            if memory.flags(of: frame).contains(.dirty) {
                swap.write(frame, to: slot, memory: memory)
                memory.clearFlags(.dirty, on: frame)
            }
            guard swap.removeFromCacheIfUnused(frame, expectedReferences: 2, expectedMappings: 0, memory: memory) else {
                return .kept(active: false)
            }
            memory.clearFlags(.swapCache, on: frame)
            memory.put(frame)  // the swap cache's reference
            statistics.evictedAnonymous.add(1, ordering: .relaxed)
        } else {
            guard removeFromPageCacheIfUnused(frame, expectedReferences: 2) else { return .kept(active: false) }
            memory.put(frame)  // the page cache's reference
            statistics.evictedFile.add(1, ordering: .relaxed)
        }
        return .evicted
    }

    /// Reclaims a lazily freed page (frame locked, isolated): each mapping
    /// is unmapped under a `vmscan` invalidation and the page is discarded,
    /// not swapped, while it is clean; the PTE is cleared, so the next
    /// access reads zeroes. If the page was written since MADV_FREE (a
    /// dirty PTE, or the frame marked dirty, by a CPU write or a device's
    /// set_dirty, which a secondary's callback can still do when the
    /// invalidation starts), the PTE stays, the page becomes swap-backed
    /// again and is kept (Linux: `try_to_unmap_one` restoring the PTE and
    /// `folio_set_swapbacked`).
    /// Only the mappings in `checked` (if given) are unmapped, as `evict`'s.
    private func discardLazilyFreed(_ frame: Int32, checked: MappingKeys?) -> Eviction {
        var redirtied = false
        forEachMapping(of: frame) { space, address in
            if let checked, !checked.contains(MappingKey(space: space.id, address: address)) { return }
            space.invalidateBlocking(address, address + 4096, .vmscan, flush: .wholeSpace) { _, pte, released in
                guard pte.isPresent, pte.frame == frame, !redirtied else { return }
                if pte.isDirty || memory.flags(of: frame).contains(.dirty) {
                    if pte.isDirty { memory.setFlags(.dirty, on: frame) }
                    redirtied = true
                    return
                }
                memory.removeMapping(frame)
                released.frames.append(frame)
                space.residentPages.subtract(1, ordering: .relaxed)
                pte = .none
            }
        }
        if redirtied {
            // Off the LRU (isolated): clearing the flag moves it to the
            // anonymous lists when it is put back.
            memory.clearFlags(.lazyFree, on: frame)
            statistics.lazyFreeRedirtied.add(1, ordering: .relaxed)
            return .kept(active: true)
        }
        guard memory.mapcount(of: frame) == 0 else { return .kept(active: false) }  // a fault mapped it again
        statistics.lazyFreeDiscards.add(1, ordering: .relaxed)
        return .evicted
    }

    /// Whether the CPU or any secondary used the frame since the last look;
    /// clears what it reads, as `folio_referenced` does.
    func isRecentlyUsed(_ frame: Int32) -> Bool { checkReferences(frame).used }

    /// `folio_referenced`: for every mapping whose PTE maps `frame` now, the
    /// CPU's accessed bit, cleared, ORed with every secondary's
    /// `clearYoung` of that page; and those mappings. The reverse map only
    /// says where the frame *may* be mapped (Linux's `page_vma_mapped_walk`
    /// filters its false positives): a frame the page has left (a COW copy
    /// replaced it, it was unmapped and stayed in the swap cache, it was
    /// migrated) must not ask the secondaries about the page, whose accessed
    /// bits then belong to another frame. Taking them would leave that frame
    /// looking cold to its own check, and the two checks could overlap.
    ///
    /// Each mapping's check runs under its space's `youngLock`, from the look
    /// at the PTE to the last answer, as Linux's runs under the page-table lock.
    func checkReferences(_ frame: Int32) -> (used: Bool, mapped: MappingKeys) {
        var cpu = memory.testAndClear(.referenced, on: frame)
        var device = false
        var mapped = MappingKeys()
        forEachMapping(of: frame) { space, address in
            space.youngLock.withLock {
                let maps = space.ptl.withLock { () -> Bool in
                    let pte = space.pageTable.entry(address >> 12)
                    guard pte.isPresent, pte.frame == frame else { return false }
                    if pte.isAccessed {
                        space.pageTable.set(address >> 12, pte.with(accessed: false))
                        cpu = true
                    }
                    return true
                }
                guard maps else { return }
                mapped.insert(MappingKey(space: space.id, address: address))
                if !faults.contains(.skipYoungCheck), space.notifiers.clearYoung(start: address, end: address + 4096) {
                    device = true
                }
            }
        }
        if device { statistics.keptBySecondaryYoung.add(1, ordering: .relaxed) } else if cpu { statistics.keptYoung.add(1, ordering: .relaxed) }
        return (cpu || device, mapped)
    }
}
