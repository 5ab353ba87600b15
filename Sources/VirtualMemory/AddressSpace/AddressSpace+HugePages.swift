import LabSync
import MMUNotifier

// Transparent huge pages in an address space: where they may be made, the
// huge fault (do_huge_pmd_anonymous_page), and splitting them before an
// operation that touches part of one (split_huge_pmd: a hugeSplit,
// CLEAR-type, invalidation over the whole 2 MiB first, then the
// operation's own event for its own range).
//
// A PMD mapping is 512 PTEs with the huge bit, each naming its own frame
// of the folio (see PTE): every path that reads one PTE reaches the right
// page, and the paths that change PTEs change a huge mapping only whole
// (zap, protection changes, fork, migration) or split it first.

extension AddressSpace {
    /// Bytes a huge page maps.
    public static let hugeSize: UInt64 = 2 << 20

    /// Whether the aligned 2 MiB at `block` may be a huge page in `vma`
    /// (mmap lock held): private anonymous memory, wholly inside the VMA,
    /// and allowed by the machine's setting and the VMA's advice.
    /// `ignoringSetting`: MADV_COLLAPSE's question, which only
    /// MADV_NOHUGEPAGE answers no to.
    func hugeEligible(_ vma: VMA, block: UInt64, ignoringSetting: Bool = false) -> Bool {
        guard vma.kind == .anonymousPrivate, !vma.noHugePage, block % Self.hugeSize == 0, block >= vma.start,
            block + Self.hugeSize <= vma.end
        else { return false }
        if ignoringSetting { return true }
        switch machine.configuration.transparentHugePages {
        case .never: return false
        case .madvise: return vma.hugePage
        case .always: return true
        }
    }

    /// madvise(MADV_HUGEPAGE) (`enable`) or (MADV_NOHUGEPAGE) on the private
    /// anonymous mappings of the range. Nothing is split or collapsed now.
    public func adviseHugePage(start: UInt64, length: UInt64, enable: Bool) throws(MemoryError) {
        try checkRange(start, length)
        mmapLock.withExclusive {
            for vma in carve(start, start + length) where vma.kind == .anonymousPrivate {
                vma.hugePage = enable
                vma.noHugePage = !enable
            }
        }
    }

    /// A fault on untouched memory in an aligned 2 MiB a huge page may fill
    /// (mmap lock held; Linux: `do_huge_pmd_anonymous_page`): a fresh huge
    /// folio, zeroed, mapped by 512 writable, dirty PTEs with one mapping
    /// count, if all 512 are empty and a folio can be had without reclaim.
    /// Returns false to fall back to a small page.
    func hugeFault(_ vma: VMA, _ address: UInt64) -> Bool {
        let block = address & ~(Self.hugeSize - 1)
        guard hugeEligible(vma, block: block), allEmpty(block) else { return false }
        guard let head = memory.allocateHuge(preferring: Int(id.rawValue) % memory.nodes.count, flags: .anonymous) else {
            machine.statistics.hugeFallbacks.add(1, ordering: .relaxed)
            return false
        }
        machine.reclaimer?.wakeIfLow()
        vma.own(head, at: block, memory: memory)
        let frames = memory.members(of: head)
        // Locked and on the LRU before it is mapped, as a small page.
        let locked = memory.tryLock(head)
        precondition(locked, "a fresh huge folio is unlocked")
        memory.node(of: head).addToLRU(head, memory: memory)
        let writable = vma.protection.contains(.write)
        let installed = ptl.withLock { () -> Bool in
            var empty = true
            pageTable.forEachEntry(from: block >> 12, to: (block + Self.hugeSize) >> 12, create: true) { _, pte in
                if !pte.isNone { empty = false }
            }
            guard empty else { return false }
            memory.addMapping(head)  // its own reference (see `zeroFill`): ours is put after the unlock
            pageTable.forEachEntry(from: block >> 12, to: (block + Self.hugeSize) >> 12, create: true) { vpn, pte in
                pte = PTE.present(frame: frames[Int(vpn & 511)], writable: writable, dirty: true).with(huge: true)
            }
            residentPages.add(PhysicalMemory.hugePages, ordering: .relaxed)
            return true
        }
        memory.unlock(head)
        memory.put(head)  // the allocation's (the last one if it was not installed)
        guard installed else { return false }
        machine.statistics.hugeFaults.add(1, ordering: .relaxed)
        machine.statistics.faults.add(1, ordering: .relaxed)
        return true
    }

    /// Whether every PTE of the 2 MiB at `block` is empty.
    private func allEmpty(_ block: UInt64) -> Bool {
        ptl.withLock {
            var empty = true
            pageTable.forEachEntry(from: block >> 12, to: (block + Self.hugeSize) >> 12) { _, pte in
                if !pte.isNone { empty = false }
            }
            return empty
        }
    }

    // MARK: - Splitting

    /// Splits the huge folio mapped at `address`, if there is one (mmap lock
    /// held, any mode; may sleep): in every address space that maps it, a
    /// `hugeSplit` invalidation of its 2 MiB turns the PMD mapping into 512
    /// small mappings of the same frames (see `Machine.splitHugeFolio`). A
    /// huge page in the middle of a migration is waited for first.
    func splitHugePage(at address: UInt64, zeroUnused: Bool = false) {
        for _ in 0..<64 {
            let found = ptl.withLock { () -> (head: Int32, migrating: Bool)? in
                let pte = pageTable.entry(address >> 12)
                guard pte.isHuge else { return nil }
                let head = memory.head(of: pte.frame)
                return memory.tryGet(head) ? (head, pte.isMigration) : nil
            }
            guard let (head, migrating) = found else { return }
            memory.lock(head)  // a migration or another split holds it: wait
            let split = !migrating && memory.flags(of: head).contains(.huge)
            if split { machine.splitHugeFolio(head, zeroUnused: zeroUnused) }
            memory.unlock(head)
            memory.put(head)
        }
        preconditionFailure("the huge page at 0x\(String(address, radix: 16)) would not split")
    }

    /// Splits the huge pages `[start, end)` touches (mmap lock held): only
    /// those it covers in part, when `partialOnly` (an operation on whole
    /// huge pages keeps them whole, as Linux's zap and change_protection
    /// keep a PMD they cover), or all of them.
    func splitHugePages(_ start: UInt64, _ end: UInt64, partialOnly: Bool, zeroUnused: Bool = false) {
        guard machine.configuration.transparentHugePages != .never || machine.statistics.hugeCollapses.load(ordering: .relaxed) > 0
        else { return }  // no huge page can exist (MADV_COLLAPSE may make one even then)
        if partialOnly {
            if start % Self.hugeSize != 0 { splitHugePage(at: start) }
            if end % Self.hugeSize != 0 { splitHugePage(at: end - 1) }
            return
        }
        var block = start & ~(Self.hugeSize - 1)
        while block < end {
            splitHugePage(at: max(block, start), zeroUnused: zeroUnused)
            block += Self.hugeSize
        }
    }
}
