import LabSync
import MMUNotifier

// Collapsing 512 small pages into one huge page (Linux: khugepaged's
// hpage_collapse_scan_pmd and collapse_huge_page; MADV_COLLAPSE). The scan
// asks whether the 2 MiB is in use: a page's CPU accessed bit or
// referenced flag, else every secondary's `test_young` (Linux's
// `mmu_notifier_test_young` in the scan); khugepaged collapses only a
// range with a young page, MADV_COLLAPSE regardless. The collapse itself
// replaces the 512 PTEs under one `collapse` (CLEAR-type) invalidation of
// the 2 MiB: the old frames are freed after it, so a device must drop
// them when its callback returns.

extension AddressSpace {
    /// MADV_COLLAPSE of `[start, start + length)`: every aligned 2 MiB in it
    /// of private anonymous memory that is not a huge page is collapsed,
    /// young or not, whatever the machine's THP setting (only
    /// MADV_NOHUGEPAGE refuses it, as in Linux).
    /// Returns how many were.
    @discardableResult
    public func adviseCollapse(start: UInt64, length: UInt64) throws(MemoryError) -> Int {
        try checkRange(start, length)
        var collapsed = 0
        var block = (start + Self.hugeSize - 1) & ~(Self.hugeSize - 1)
        while block + Self.hugeSize <= start + length {
            if collapse(block, requireYoung: false) == .collapsed { collapsed += 1 }
            block += Self.hugeSize
        }
        return collapsed
    }

    /// Collapses the 2 MiB at `block` (aligned) into a huge page, if every
    /// present page there can move: exclusive, unpinned anonymous pages
    /// (the zero page and empty entries become zeroes; swap entries,
    /// migration entries, device pages, device-exclusive and
    /// userfaultfd-protected pages, KSM and shared pages prevent it).
    ///
    /// Holds the mmap lock exclusively (as `collapse_huge_page` takes
    /// `mmap_write_lock`) and every old page's lock, so no fault, pin,
    /// munmap, mprotect, madvise, reclaim or migration can change an entry
    /// between the scan and the collapse.
    func collapse(_ block: UInt64, requireYoung: Bool) -> CollapseResult {
        mmapLock.withExclusive { () -> CollapseResult in
            guard state == .alive, let vma = vma(containing: block), hugeEligible(vma, block: block, ignoringSetting: !requireYoung)
            else { return .notEligible }
            let first = block >> 12
            var entries: [PTE] = []
            entries.reserveCapacity(PhysicalMemory.hugePages)
            var suitable = true
            ptl.withLock {
                pageTable.forEachEntry(from: first, to: first + UInt64(PhysicalMemory.hugePages), create: true) { _, pte in
                    entries.append(pte)
                    if pte.isNone { return }
                    guard pte.isPresent, !pte.isHuge, !pte.isDeviceExclusive, !pte.isUffdWP, !pte.isProtNone else {
                        suitable = false
                        return
                    }
                    guard pte.frame != machine.zeroFrame else { return }
                    let flags = memory.flags(of: pte.frame)
                    if !flags.contains(.anonymous) || flags.contains(.ksm) || flags.contains(.swapCache) || memory.mapcount(of: pte.frame) != 1
                        || memory.pincount(of: pte.frame) > 0
                    {
                        suitable = false
                    }
                }
            }
            if entries.allSatisfy({ $0.isPresent && $0.isHuge }) { return .notEligible }
            let present = entries.indices.filter { entries[$0].isPresent && entries[$0].frame != machine.zeroFrame }
            guard suitable, !present.isEmpty else { return .notSuitable }
            if requireYoung {
                // The scan's young check: the CPU's bits first, then the
                // devices' (test_young), page by page until one says yes.
                let young = present.contains { k in
                    entries[k].isAccessed || memory.flags(of: entries[k].frame).contains(.referenced)
                        || notifiers.testYoung(address: block + UInt64(k) * 4096)
                }
                guard young else {
                    machine.statistics.hugeCollapsesCold.add(1, ordering: .relaxed)
                    return .cold
                }
            }
            guard let head = memory.allocateHuge(preferring: Int(id.rawValue) % memory.nodes.count, flags: .anonymous) else {
                return .noMemory
            }
            let frames = memory.members(of: head)
            // The old pages, referenced and locked: nobody changes them now.
            var locked: [Int32] = []
            for k in present {
                let frame = entries[k].frame
                guard memory.tryGet(frame) else { break }
                guard memory.tryLock(frame) else {
                    memory.put(frame)
                    break
                }
                locked.append(frame)
            }
            defer {
                for frame in locked {
                    memory.unlock(frame)
                    memory.put(frame)
                }
            }
            // Between the scan and the locks, reclaim or migration (which
            // hold a page's lock, not the mmap lock) may have unmapped a
            // page, and reclaim's aging may have cleared an accessed bit:
            // look again now that nothing can change an entry.
            let unchanged = locked.count == present.count && ptl.withLock { () -> Bool in
                for k in entries.indices {
                    let now = pageTable.entry(first + UInt64(k))
                    guard now.with(accessed: false) == entries[k].with(accessed: false) else { return false }
                    entries[k] = now
                }
                return true
            }
            guard unchanged else {
                memory.put(head)
                return .busy
            }
            vma.own(head, at: block, memory: memory)
            let headLocked = memory.tryLock(head)
            precondition(headLocked, "a fresh huge folio is unlocked")
            memory.node(of: head).addToLRU(head, memory: memory)
            let writable = vma.protection.contains(.write)
            var filled = 0
            invalidateBlocking(block, block + Self.hugeSize, .collapse) { address, pte, released in
                let k = Int((address - block) >> 12)
                precondition(pte == entries[k], "an entry changed under a collapse that holds the mmap lock and the pages' locks")
                if pte.isPresent && pte.frame != machine.zeroFrame {
                    memory.copyPayload(from: pte.frame, to: frames[k])
                    memory.removeMapping(pte.frame)
                    released.frames.append(pte.frame)
                } else {
                    filled += 1  // an empty entry or the zero page: the new page stays zero
                }
                pte = PTE.present(frame: frames[k], writable: writable, dirty: true).with(huge: true)
            }
            // The entries that were empty (an invalidation's rewrite visits
            // only entries that map something; nobody can have filled them
            // meanwhile: the mmap lock is ours), and the mapping's count.
            ptl.withLock {
                for k in entries.indices where entries[k].isNone {
                    pageTable.set(first + UInt64(k), PTE.present(frame: frames[k], writable: writable, dirty: true).with(huge: true))
                    filled += 1
                }
                memory.addMapping(head)  // its own reference (see `zeroFill`): ours is put after the unlock
            }
            residentPages.add(filled, ordering: .relaxed)
            memory.unlock(head)
            memory.put(head)  // the allocation's
            machine.statistics.hugeCollapses.add(1, ordering: .relaxed)
            return .collapsed
        }
    }
}

extension Machine {
    /// One pass of a khugepaged-like collapse daemon: up to `limit` aligned
    /// 2 MiB ranges that may be huge pages and are not are tried, going on
    /// from where the last pass stopped (khugepaged's scan cursor), each
    /// collapsed only if a page in it is young (for the CPU, or for a
    /// device asked with `test_young`). Returns how many it collapsed.
    /// Passes are meant to run one at a time (one daemon).
    @discardableResult
    public func collapseScan(limit: Int = 8) -> Int {
        guard configuration.transparentHugePages != .never else { return 0 }
        var candidates: [(AddressSpace, UInt64)] = []
        for space in addressSpaces where !space.isKilled && !space.hasExited {
            let blocks = space.mmapLock.withShared { () -> [UInt64] in
                space.vmas.flatMap { vma -> [UInt64] in
                    var found: [UInt64] = []
                    var block = (vma.start + AddressSpace.hugeSize - 1) & ~(AddressSpace.hugeSize - 1)
                    while space.hugeEligible(vma, block: block) {
                        if !space.translate(block).isHuge { found.append(block) }
                        block += AddressSpace.hugeSize
                    }
                    return found
                }
            }
            candidates += blocks.map { (space, $0) }
        }
        guard !candidates.isEmpty else { return 0 }
        let first = collapseCursor.load(ordering: .relaxed) % candidates.count
        var collapsed = 0
        for step in 0..<min(limit, candidates.count) {
            let (space, block) = candidates[(first + step) % candidates.count]
            if space.collapse(block, requireYoung: true) == .collapsed { collapsed += 1 }
        }
        collapseCursor.store(first + min(limit, candidates.count), ordering: .relaxed)
        return collapsed
    }
}
