public import MMUNotifier

/// One page as `/proc/PID/pagemap` shows it (Linux: `pte_to_pagemap_entry`
/// in fs/proc/task_mmu.c), read from the model: the observation the
/// kernel-diff harness compares with the real kernel's.
public struct PageMapEntry: Sendable, Hashable {
    /// The PTE maps a frame (`PM_PRESENT`).
    public var present: Bool
    /// The PTE is a swap entry (`PM_SWAP`).
    public var swapped: Bool
    /// The frame is mapped exactly once (`PM_MMAP_EXCLUSIVE`, Linux: the
    /// page's precise mapcount is 1; never for the shared zero page, which
    /// is not a normal page).
    public var exclusive: Bool
    /// The frame, when present.
    public var frame: PageFrameNumber?
    /// The frame is the shared zero page.
    public var zeroPage: Bool

    public init(present: Bool, swapped: Bool, exclusive: Bool, frame: PageFrameNumber?, zeroPage: Bool) {
        self.present = present
        self.swapped = swapped
        self.exclusive = exclusive
        self.frame = frame
        self.zeroPage = zeroPage
    }

    public static let none = PageMapEntry(present: false, swapped: false, exclusive: false, frame: nil, zeroPage: false)
}

extension AddressSpace {
    /// The pagemap entries of `pages` pages from `start` (page aligned), as
    /// they are now. Read-only: takes the page-table lock, changes nothing.
    /// Pages outside every mapping read as `.none`, as in Linux.
    public func pageMap(start: UInt64, pages: Int) -> [PageMapEntry] {
        precondition(start % 4096 == 0 && pages >= 0, "pageMap needs a page-aligned start")
        return ptl.withLock {
            (0..<pages).map { i in
                let pte = pageTable.entry((start >> 12) + UInt64(i))
                if pte.isSwap { return PageMapEntry(present: false, swapped: true, exclusive: false, frame: nil, zeroPage: false) }
                guard pte.isPresent else { return .none }
                let zero = machine.isSharedZeroFrame(pte.frame)
                return PageMapEntry(
                    present: true, swapped: false, exclusive: !zero && memory.mapcount(of: pte.frame) == 1,
                    frame: PageFrameNumber(pte.frame), zeroPage: zero)
            }
        }
    }

    /// Whether each of `pages` pages from `start` is resident (Linux:
    /// `mincore`): for shared and file mappings, whether the page cache
    /// holds the page; for private anonymous memory, whether a frame is
    /// mapped or the swap cache holds the swapped page. nil for a page no
    /// mapping covers (Linux: `mincore` fails with ENOMEM there).
    public func residency(start: UInt64, pages: Int) -> [Bool?] {
        precondition(start % 4096 == 0 && pages >= 0, "residency needs a page-aligned start")
        return mmapLock.withShared {
            (0..<pages).map { i -> Bool? in
                let address = start + UInt64(i) * 4096
                guard let vma = vma(containing: address) else { return nil }
                if let file = vma.file {
                    let index = vma.index(of: address)
                    return file.cacheLock.withLock { file.pageCache[index] != nil }
                }
                let pte = translateLocked(address)
                if pte.isPresent { return true }
                guard pte.isSwap, let cached = machine.swap.cachedFrame(pte.swapSlot, memory: memory) else { return false }
                _ = memory.put(cached)  // the lookup's reference
                return true
            }
        }
    }
}

extension Machine {
    /// Whether `frame` is the shared zero page a read fault on untouched
    /// private anonymous memory maps (Linux: `is_zero_pfn`).
    public func isSharedZeroFrame(_ frame: Int32) -> Bool { frame == zeroFrame }
}
