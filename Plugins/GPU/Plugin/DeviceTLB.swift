/// The GPU's TLB: a small cache of page-table entries in front of the page
/// table. It is not coherent with the table: whoever changes the table must
/// invalidate the TLB for the range explicitly (a flush, counted), or the
/// GPU keeps using the old translation, which is exactly the stale
/// translation bug the lab exists to catch.
///
/// Not synchronised: the owning `GPUVM`'s lock guards it.
struct DeviceTLB {
    struct Entry {
        var pte: GPUPTE
        /// Set when the entry came from a 2 MiB page-table entry (then it
        /// covers the whole chunk, and `huge` holds its pages).
        var huge: HugeEntry?
    }

    let capacity: Int
    let counters: GPUCounters
    /// Keyed by 4 KiB page number, or by 2 MiB chunk number with the top bit set.
    private var entries: [UInt64: Entry] = [:]
    private var order: [UInt64] = []

    init(capacity: Int, counters: GPUCounters) {
        precondition(capacity > 0, "a TLB needs at least one entry")
        self.capacity = capacity
        self.counters = counters
    }

    private static let hugeTag: UInt64 = 1 << 63
    private static func key(_ address: UInt64, huge: Bool) -> UInt64 { huge ? (address >> 21) | hugeTag : address >> 12 }

    mutating func lookup(_ address: UInt64) -> GPUPTE? {
        if let entry = entries[Self.key(address, huge: false)] {
            counters[.tlbHits].add(1, ordering: .relaxed)
            return entry.pte
        }
        if let entry = entries[Self.key(address, huge: true)], let huge = entry.huge {
            counters[.tlbHits].add(1, ordering: .relaxed)
            return huge.pages[Int((address >> 12) & 511)]
        }
        counters[.tlbMisses].add(1, ordering: .relaxed)
        return nil
    }

    mutating func fill(_ address: UInt64, _ pte: GPUPTE, huge: HugeEntry?) {
        let key = Self.key(address, huge: huge != nil)
        if entries[key] == nil {
            if order.count == capacity { entries.removeValue(forKey: order.removeFirst()) }
            order.append(key)
        }
        entries[key] = Entry(pte: pte, huge: huge)
    }

    /// Drops every entry overlapping `[start, end)`: one flush.
    mutating func invalidate(_ start: UInt64, _ end: UInt64) {
        counters[.tlbFlushes].add(1, ordering: .relaxed)
        order.removeAll { key in
            let (first, size): (UInt64, UInt64) = key & Self.hugeTag != 0 ? ((key & ~Self.hugeTag) << 21, 2 << 20) : (key << 12, 4096)
            guard first < end && start < first + size else { return false }
            entries.removeValue(forKey: key)
            return true
        }
    }

    /// Whether any entry overlaps `[start, end)` (the invariant after a flush: none).
    func covers(_ start: UInt64, _ end: UInt64) -> Bool {
        entries.keys.contains { key in
            let (first, size): (UInt64, UInt64) = key & Self.hugeTag != 0 ? ((key & ~Self.hugeTag) << 21, 2 << 20) : (key << 12, 4096)
            return first < end && start < first + size
        }
    }
}
