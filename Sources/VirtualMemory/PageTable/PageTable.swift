/// A four-level radix page table over a 44-bit virtual address space, 512
/// entries per level as on x86-64 (the top level has 32): the same walk a
/// hardware MMU does, so range operations touch one leaf table per 2 MiB.
///
/// Not thread-safe: the address space guards it with its page-table lock.
/// Tables are allocated on first use and freed when the address space is
/// torn down (Linux frees empty tables lazily too; `free_pgtables`).
final class PageTable {
    static let addressBits = 44
    static let limit: UInt64 = 1 << UInt64(addressBits)
    static let entriesPerTable = 512
    private static let topEntries = 1 << (addressBits - 12 - 27)  // 32

    // Levels: top (32 entries) -> 512 -> 512 -> leaf (512 PTEs).
    private let top: UnsafeMutablePointer<UnsafeMutablePointer<UnsafeMutablePointer<UnsafeMutablePointer<UInt64>?>?>?>
    private(set) var leafTables = 0

    init() {
        top = .allocate(capacity: Self.topEntries)
        top.initialize(repeating: nil, count: Self.topEntries)
    }

    deinit {
        for i in 0..<Self.topEntries {
            guard let mid = top[i] else { continue }
            for j in 0..<512 {
                guard let low = mid[j] else { continue }
                for k in 0..<512 { low[k]?.deallocate() }
                low.deallocate()
            }
            mid.deallocate()
        }
        top.deallocate()
    }

    @inline(__always)
    private static func split(_ vpn: UInt64) -> (Int, Int, Int, Int) {
        (Int(vpn >> 27), Int((vpn >> 18) & 511), Int((vpn >> 9) & 511), Int(vpn & 511))
    }

    /// The leaf table covering virtual page `vpn`, created if `create`.
    @inline(__always)
    func leaf(forPage vpn: UInt64, create: Bool) -> UnsafeMutablePointer<UInt64>? {
        precondition(vpn < Self.limit >> 12, "virtual page \(vpn) beyond the model's 44-bit address space")
        let (a, b, c, _) = Self.split(vpn)
        var mid = top[a]
        if mid == nil {
            guard create else { return nil }
            let fresh = UnsafeMutablePointer<UnsafeMutablePointer<UnsafeMutablePointer<UInt64>?>?>.allocate(capacity: 512)
            fresh.initialize(repeating: nil, count: 512)
            top[a] = fresh
            mid = fresh
        }
        var low = mid![b]
        if low == nil {
            guard create else { return nil }
            let fresh = UnsafeMutablePointer<UnsafeMutablePointer<UInt64>?>.allocate(capacity: 512)
            fresh.initialize(repeating: nil, count: 512)
            mid![b] = fresh
            low = fresh
        }
        var table = low![c]
        if table == nil {
            guard create else { return nil }
            let fresh = UnsafeMutablePointer<UInt64>.allocate(capacity: 512)
            fresh.initialize(repeating: 0, count: 512)
            low![c] = fresh
            table = fresh
            leafTables += 1
        }
        return table
    }

    func entry(_ vpn: UInt64) -> PTE {
        guard let table = leaf(forPage: vpn, create: false) else { return .none }
        return PTE(rawValue: table[Int(vpn & 511)])
    }

    func set(_ vpn: UInt64, _ pte: PTE) {
        leaf(forPage: vpn, create: true)![Int(vpn & 511)] = pte.rawValue
    }

    /// Visits every page of `[first, end)` (page numbers) that has a leaf
    /// table, letting `body` read and rewrite the entry in place. Runs of
    /// pages without tables are skipped a whole table at a time.
    func forEachEntry(from first: UInt64, to end: UInt64, create: Bool = false, _ body: (UInt64, inout PTE) -> Void) {
        var vpn = first
        while vpn < end {
            let tableEnd = min((vpn | 511) + 1, end)
            if let table = leaf(forPage: vpn, create: create) {
                for page in vpn..<tableEnd {
                    var pte = PTE(rawValue: table[Int(page & 511)])
                    let before = pte
                    body(page, &pte)
                    if pte != before { table[Int(page & 511)] = pte.rawValue }
                }
            }
            vpn = tableEnd
        }
    }

    /// `forEachEntry`, stopping before the next page once `stop()` answers
    /// true (asked after each page `body` saw). Returns the page it stopped
    /// at: `end` if it went through.
    func forEachEntry(from first: UInt64, to end: UInt64, until stop: () -> Bool, _ body: (UInt64, inout PTE) -> Void) -> UInt64 {
        var vpn = first
        while vpn < end {
            let tableEnd = min((vpn | 511) + 1, end)
            guard let table = leaf(forPage: vpn, create: false) else {
                vpn = tableEnd
                continue
            }
            while vpn < tableEnd {
                var pte = PTE(rawValue: table[Int(vpn & 511)])
                let before = pte
                body(vpn, &pte)
                if pte != before { table[Int(vpn & 511)] = pte.rawValue }
                vpn += 1
                if vpn < end && stop() { return vpn }
            }
        }
        return end
    }
}
