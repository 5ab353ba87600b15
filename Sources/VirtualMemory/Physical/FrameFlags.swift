/// Per-frame state bits (Linux: the `PG_*` page flags that matter here).
public struct FrameFlags: OptionSet, Sendable, Hashable, CustomStringConvertible {
    public let rawValue: UInt16
    public init(rawValue: UInt16) { self.rawValue = rawValue }

    /// Allocated (not on a free list).
    public static let allocated = FrameFlags(rawValue: 1 << 0)
    /// Locked for an operation that must own the page (PG_locked): reclaim,
    /// migration, KSM merge, swap-in.
    public static let locked = FrameFlags(rawValue: 1 << 1)
    /// Someone sleeps waiting for `locked` to clear (PG_waiters).
    public static let waiters = FrameFlags(rawValue: 1 << 2)
    /// Contents differ from the backing store (PG_dirty).
    public static let dirty = FrameFlags(rawValue: 1 << 3)
    /// Recently used, per `markAccessed` (PG_referenced).
    public static let referenced = FrameFlags(rawValue: 1 << 4)
    /// On an LRU list (PG_lru).
    public static let onLRU = FrameFlags(rawValue: 1 << 5)
    /// On the active rather than the inactive list (PG_active).
    public static let active = FrameFlags(rawValue: 1 << 6)
    /// Anonymous memory: backed by swap, owned by an anonymous region.
    public static let anonymous = FrameFlags(rawValue: 1 << 7)
    /// In the swap cache (PG_swapcache): has a swap slot.
    public static let swapCache = FrameFlags(rawValue: 1 << 8)
    /// A KSM stable page, shared read-only.
    public static let ksm = FrameFlags(rawValue: 1 << 9)
    /// Holds a device's page-table page, charged to physical memory.
    public static let devicePageTable = FrameFlags(rawValue: 1 << 10)
    /// Device-private memory stands in for this page's contents.
    public static let devicePrivate = FrameFlags(rawValue: 1 << 11)
    /// The shared zero page: never freed, never written, never on an LRU.
    public static let zeroPage = FrameFlags(rawValue: 1 << 12)
    /// Lazily freed anonymous memory (madvise MADV_FREE; Linux: an anon
    /// folio with PG_swapbacked cleared): it sits on the file LRU, and
    /// reclaim discards it instead of swapping it, unless it was written
    /// (its PTE or the frame dirty) since.
    public static let lazyFree = FrameFlags(rawValue: 1 << 13)
    /// The head frame of a transparent huge page (a 2 MiB folio of 512
    /// frames): it holds the folio's reference, mapping and pin counts,
    /// flags, rmap owner and LRU place for all of them.
    public static let huge = FrameFlags(rawValue: 1 << 14)
    /// One of the 511 other frames of a huge folio: only its payload and
    /// generation are its own; every count, flag and lock is the head's
    /// (`PhysicalMemory.head(of:)`). `flags(of:)` of a tail answers the
    /// head's flags with this one added.
    public static let tail = FrameFlags(rawValue: 1 << 15)

    /// Whether the frame belongs on an anonymous LRU list (swap-backed);
    /// a lazily freed page goes on the file lists, as Linux's `lru_lazyfree`
    /// moves it.
    var onAnonymousLRU: Bool { contains(.anonymous) && !contains(.lazyFree) }

    public var description: String {
        let names: [(FrameFlags, String)] = [
            (.allocated, "allocated"), (.locked, "locked"), (.waiters, "waiters"), (.dirty, "dirty"),
            (.referenced, "referenced"), (.onLRU, "lru"), (.active, "active"), (.anonymous, "anon"),
            (.swapCache, "swapcache"), (.ksm, "ksm"), (.devicePageTable, "device-pt"), (.devicePrivate, "device-private"),
            (.zeroPage, "zero-page"), (.lazyFree, "lazyfree"), (.huge, "huge"), (.tail, "tail"),
        ]
        let set = names.filter { contains($0.0) }.map(\.1)
        return set.isEmpty ? "[]" : "[" + set.joined(separator: ",") + "]"
    }
}
