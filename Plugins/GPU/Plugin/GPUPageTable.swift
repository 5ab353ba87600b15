import DevicePluginKit

/// A leaf of the GPU page table: the primary's translation of one 4 KiB
/// page (a system frame, or a page of the GPU's own memory), whether the GPU
/// may write through it, and whether it did (the dirty bit hardware sets).
struct GPUPTE {
    var pfn: PFN
    var writable: Bool
    var dirty = false
    /// Taken exclusive for atomics (`make_exclusive`): the GPU's atomics
    /// go only through such an entry.
    var exclusive = false
}

/// A 2 MiB leaf: one entry at level 1 that maps an aligned 2 MiB chunk.
/// Hardware keeps one base address for a physically contiguous chunk; the
/// lab's frames are not contiguous, so the entry keeps the 512 translations
/// it stands for. What matters is what hardware does with it: one entry,
/// one TLB slot, no level-0 table, and it is dropped whole.
final class HugeEntry {
    var pages: [GPUPTE]
    init(_ pages: [GPUPTE]) { self.pages = pages }
}

/// A page of the GPU page table, backed by a page the host charged to
/// physical memory (`alloc_page_table_page`).
final class GPUPageTableNode {
    enum Slot {
        case empty
        case table(GPUPageTableNode)
        case page(GPUPTE)
        case huge(HugeEntry)
    }

    /// 3: the root (bits 39...47) ... 0: a leaf table of 4 KiB entries.
    let level: Int
    let backing: UInt64
    var slots: [Slot] = Array(repeating: .empty, count: 512)
    var used = 0

    init(level: Int, backing: UInt64) {
        self.level = level
        self.backing = backing
    }

    var shift: UInt64 { 12 + 9 * UInt64(level) }
    func index(_ address: UInt64) -> Int { Int((address >> shift) & 511) }
}

/// The GPU's page table for one address space: four levels, 48-bit
/// virtual addresses, 4 KiB entries, and 2 MiB entries where a whole
/// aligned chunk is mapped with one permission (as current GPUs' MMUs do).
///
/// Not synchronised: the owning `GPUVM`'s lock guards it. Table pages come
/// from a cache the caller fills before taking that lock (allocation may
/// reclaim, and reclaim calls back into the GPU), as KVM tops up its MMU
/// memory caches before taking `mmu_lock`.
struct GPUPageTable {
    static let hugeSize: UInt64 = 2 << 20
    static let vaLimit: UInt64 = 1 << 48

    let root: GPUPageTableNode
    /// Table pages in use, the root included.
    private(set) var tablePages = 1
    private(set) var hugeEntries = 0

    init(rootBacking: UInt64) { root = GPUPageTableNode(level: 3, backing: rootBacking) }

    /// The entry for `address`, and whether it is a 2 MiB one.
    func lookup(_ address: UInt64) -> (pte: GPUPTE, huge: HugeEntry?)? {
        var node = root
        while true {
            switch node.slots[node.index(address)] {
            case .empty: return nil
            case .page(let pte): return (pte, nil)
            case .huge(let entry): return (entry.pages[Int((address >> 12) & 511)], entry)
            case .table(let child): node = child
            }
        }
    }

    /// Sets the dirty bit of the entry for `address` (the GPU wrote through it).
    mutating func markDirty(_ address: UInt64) {
        var node = root
        while true {
            let i = node.index(address)
            switch node.slots[i] {
            case .empty: return
            case .page(var pte):
                pte.dirty = true
                node.slots[i] = .page(pte)
                return
            case .huge(let entry):
                entry.pages[Int((address >> 12) & 511)].dirty = true
                return
            case .table(let child): node = child
            }
        }
    }

    /// Installs a 4 KiB entry, creating tables from `cache`. False if the
    /// cache ran dry (nothing is half-installed: created tables stay, empty).
    mutating func install(_ address: UInt64, _ pte: GPUPTE, cache: inout [UInt64]) -> Bool {
        guard let leaf = table(for: address, level: 0, cache: &cache) else { return false }
        let i = leaf.index(address)
        if case .empty = leaf.slots[i] { leaf.used += 1 }
        leaf.slots[i] = .page(pte)
        return true
    }

    /// Installs a 2 MiB entry for the aligned chunk at `address`; a level-0
    /// table there is replaced and its page returned in `freed`.
    mutating func installHuge(_ address: UInt64, _ pages: [GPUPTE], cache: inout [UInt64], freed: inout [UInt64]) -> Bool {
        precondition(address % Self.hugeSize == 0 && pages.count == 512, "a 2 MiB entry maps an aligned 2 MiB chunk")
        guard let table = table(for: address, level: 1, cache: &cache) else { return false }
        let i = table.index(address)
        switch table.slots[i] {
        case .empty: table.used += 1
        case .table(let leaf):
            freed.append(leaf.backing)
            tablePages -= 1
        case .huge: hugeEntries -= 1
        case .page: preconditionFailure("a 4 KiB entry at level 1")
        }
        table.slots[i] = .huge(HugeEntry(pages))
        hugeEntries += 1
        return true
    }

    /// Clears every entry in `[start, end)`; a 2 MiB entry that overlaps is
    /// cleared whole. Returns the cleared entries (for their dirty bits);
    /// tables left empty go to `freed`.
    mutating func clear(_ start: UInt64, _ end: UInt64, freed: inout [UInt64]) -> [GPUPTE] {
        var cleared: [GPUPTE] = []
        clear(root, start, end, &cleared, &freed)
        return cleared
    }

    private mutating func clear(_ node: GPUPageTableNode, _ start: UInt64, _ end: UInt64, _ cleared: inout [GPUPTE], _ freed: inout [UInt64]) {
        let span = UInt64(1) << node.shift
        let base = start & ~(span * 512 - 1)
        var i = node.index(start)
        while i < 512 {
            let slotStart = base + UInt64(i) * span
            if slotStart >= end { break }
            switch node.slots[i] {
            case .empty: break
            case .page(let pte):
                cleared.append(pte)
                node.slots[i] = .empty
                node.used -= 1
            case .huge(let entry):
                cleared.append(contentsOf: entry.pages)
                node.slots[i] = .empty
                node.used -= 1
                hugeEntries -= 1
            case .table(let child):
                clear(child, max(start, slotStart), min(end, slotStart + span), &cleared, &freed)
                if child.used == 0 {
                    freed.append(child.backing)
                    tablePages -= 1
                    node.slots[i] = .empty
                    node.used -= 1
                }
            }
            i += 1
        }
    }

    /// The table at `level` covering `address`, made from `cache` where missing.
    private mutating func table(for address: UInt64, level: Int, cache: inout [UInt64]) -> GPUPageTableNode? {
        precondition(address < Self.vaLimit, "GPU virtual addresses have 48 bits")
        var node = root
        while node.level > level {
            let i = node.index(address)
            switch node.slots[i] {
            case .table(let child): node = child
            case .empty:
                guard let page = cache.popLast() else { return nil }
                let child = GPUPageTableNode(level: node.level - 1, backing: page)
                node.slots[i] = .table(child)
                node.used += 1
                tablePages += 1
                node = child
            case .huge(let entry):
                // Splitting a 2 MiB entry to install a 4 KiB one: its pages go
                // into a fresh leaf table first (the caller then overwrites one).
                guard let page = cache.popLast() else { return nil }
                let leaf = GPUPageTableNode(level: 0, backing: page)
                for (k, pte) in entry.pages.enumerated() { leaf.slots[k] = .page(pte) }
                leaf.used = 512
                node.slots[i] = .table(leaf)
                tablePages += 1
                hugeEntries -= 1
                node = leaf
            case .page: preconditionFailure("a 4 KiB entry above level 0")
            }
        }
        return node
    }

    /// Every table page, the root included (to return them at teardown).
    func allTablePages() -> [UInt64] {
        var pages: [UInt64] = []
        func walk(_ node: GPUPageTableNode) {
            pages.append(node.backing)
            for slot in node.slots { if case .table(let child) = slot { walk(child) } }
        }
        walk(root)
        return pages
    }
}
