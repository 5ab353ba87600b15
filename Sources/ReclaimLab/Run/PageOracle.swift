import MMUNotifier
import Synchronization
import VirtualMemory

/// The data half of the oracle (docs/ORACLE.md, the tag oracle): every page a
/// workload writes carries a tag (address space, mapping, page, version),
/// each page has exactly one writer thread, and the writer publishes the
/// versions it completed. A read must find its own page's tag (anything
/// else is another page's or another address space's data: a use after
/// free or a cross-address-space leak) at a version no older than the one
/// completed before the read began (older: a lost write).
///
/// A mapping's epoch moves when munmap churn replaces its memory; checks
/// that straddle an epoch change are skipped, as the data legitimately went.
final class TrackedMapping: @unchecked Sendable {
    // @unchecked: the arrays are atomics, allocated once.
    let spaceIndex: Int
    let mappingIndex: Int
    let address: UInt64
    let pages: Int
    /// Pages `0..<duplicates` hold the same fixed content (KSM's food) and
    /// are never written.
    let duplicates: Int
    /// Per page: the epoch (high half) and the last version its writer
    /// completed in it (low half). Published with a compare-and-exchange
    /// from the value the writer started from, so a publish that lost a
    /// race with churn's reset fails instead of landing in the new epoch.
    let completed: UnsafeMutablePointer<Atomic<UInt64>>
    /// Odd while the memory is being replaced.
    let epoch = Atomic<UInt64>(0)
    /// The scenario's names for the space and the mapping, and the space.
    let spaceName: String
    let mappingName: String
    let space: AddressSpace
    /// Set for a mapping devices use hot (the hot-pages check).
    let hot: HotPages?
    /// The mapping's writer threads, by writer index (set as the run is set
    /// up, before any thread starts; read-only after): page `p` (past the
    /// duplicates) is written by `writers[(p - duplicates) % writers.count]` only.
    var writers: [ActorIdentity] = []

    /// Who writes `page` (nil: nobody; a duplicate page, or no writer).
    func writer(of page: Int) -> ActorIdentity? {
        guard page >= duplicates, !writers.isEmpty else { return nil }
        return writers[(page - duplicates) % writers.count]
    }

    /// Per page, two words: the last invalidation start that covered it
    /// and the one before, each as the lab clock's nanoseconds (high 56
    /// bits) and the event's raw value + 1 (low 8 bits); 0 if none. Written
    /// by the lab's trail subscriber (the two stores are not one atomic
    /// step: a reader racing them may see the new word twice, which only
    /// makes it ask the trail's ring), read to name the event that
    /// preceded a finding (a bug's key).
    let lastInvalidations: UnsafeMutablePointer<Atomic<UInt64>>

    /// Per page, what the last MADV_FREE of it allows a read to find:
    /// zeroes are legal (reclaim may have discarded the clean page) as long
    /// as no write completed after that MADV_FREE returned, for a write
    /// after MADV_FREE must survive (Linux: a dirty lazily freed page is
    /// kept). The word: bit 63 set if there is a mark, bit 62 while the
    /// MADV_FREE is in progress (any write may still be lost then), the
    /// epoch's low 30 bits, and the last version completed when it
    /// returned. Written by the lazy-free actor, read by readers that
    /// found zeroes.
    let lazyFreeMarks: UnsafeMutablePointer<Atomic<UInt64>>
    private static let markedBit: UInt64 = 1 << 63
    private static let inProgressBit: UInt64 = 1 << 62

    private static func markEpoch(_ epoch: UInt64) -> UInt64 { (epoch & 0x3FFF_FFFF) << 32 }

    /// MADV_FREE of `pages` in `epoch` is about to begin (call before it).
    func beginLazyFree(_ pages: Range<Int>, in epoch: UInt64) {
        for page in pages { lazyFreeMarks[page].store(Self.markedBit | Self.inProgressBit | Self.markEpoch(epoch), ordering: .releasing) }
    }

    /// MADV_FREE of `pages` in `epoch` returned: from now on a write that
    /// completes must survive. The one write the page's writer may have in
    /// flight now (it landed before the MADV_FREE cleaned the page, and
    /// publishes its version only now) is excused too: one write after the
    /// MADV_FREE may go unchecked, none is wrongly accused.
    func endLazyFree(_ pages: Range<Int>, in epoch: UInt64) {
        for page in pages {
            let completed = UInt64(version(of: page, in: epoch).version)
            lazyFreeMarks[page].store(Self.markedBit | Self.markEpoch(epoch) | (completed + 1), ordering: .releasing)
        }
    }

    /// Whether zeroes read from `page` in `epoch` are what a lazily freed
    /// page may hold, for a reader that knew of version `before`: a MADV_FREE
    /// of the page is in progress, or one returned after `before` completed.
    func mayReadZerosAfterLazyFree(_ page: Int, knowing before: UInt32, in epoch: UInt64) -> Bool {
        let word = lazyFreeMarks[page].load(ordering: .acquiring)
        guard word & Self.markedBit != 0, word & 0x3FFF_FFFF_0000_0000 == Self.markEpoch(epoch) else { return false }
        return word & Self.inProgressBit != 0 || UInt32(truncatingIfNeeded: word) >= before
    }

    /// Where page `page` is, and what the primary maps there now.
    func place(of page: Int) -> Finding.Place {
        let address = address + UInt64(page) * 4096
        return Finding.Place(space: spaceName, mapping: mappingName, page: page, address: address, frame: "\(space.translate(address))")
    }

    /// The version completed for `page` in `epoch` (0 if none yet).
    func version(of page: Int, in epoch: UInt64) -> (word: UInt64, version: UInt32) {
        let word = completed[page].load(ordering: .acquiring)
        return (word, word >> 32 == epoch & 0xFFFF_FFFF ? UInt32(truncatingIfNeeded: word) : 0)
    }

    /// Publishes `version` for `page` if nothing changed since `word`.
    func publish(_ version: UInt32, of page: Int, in epoch: UInt64, replacing word: UInt64) {
        _ = completed[page].compareExchange(
            expected: word, desired: (epoch & 0xFFFF_FFFF) << 32 | UInt64(version), ordering: .acquiringAndReleasing)
    }

    /// Forgets every version (the memory was replaced), marking `epoch`.
    func reset(to epoch: UInt64) {
        for page in 0..<pages { completed[page].store((epoch & 0xFFFF_FFFF) << 32, ordering: .releasing) }
    }

    init(
        spaceIndex: Int, mappingIndex: Int, address: UInt64, pages: Int, duplicates: Int, names: (space: String, mapping: String),
        space: AddressSpace, hot: Bool
    ) {
        spaceName = names.space
        mappingName = names.mapping
        self.space = space
        self.hot = hot ? HotPages(pages: pages) : nil
        self.spaceIndex = spaceIndex
        self.mappingIndex = mappingIndex
        self.address = address
        self.pages = pages
        self.duplicates = duplicates
        completed = .allocate(capacity: pages)
        for index in 0..<pages { (completed + index).initialize(to: Atomic(0)) }  // epoch 0, version 0
        lastInvalidations = .allocate(capacity: 2 * pages)
        for index in 0..<2 * pages { (lastInvalidations + index).initialize(to: Atomic(0)) }
        lazyFreeMarks = .allocate(capacity: pages)
        for index in 0..<pages { (lazyFreeMarks + index).initialize(to: Atomic(0)) }
    }

    deinit {
        completed.deinitialize(count: pages)
        completed.deallocate()
        lastInvalidations.deinitialize(count: 2 * pages)
        lastInvalidations.deallocate()
        lazyFreeMarks.deinitialize(count: pages)
        lazyFreeMarks.deallocate()
    }

    /// An invalidation of `event` started on `[start, end)` at `nanoseconds`.
    func noteInvalidation(_ event: NotifierEvent, start: UInt64, end: UInt64, at nanoseconds: UInt64) {
        let first = max(start, address)
        let last = min(end, address + UInt64(pages) * 4096)
        guard first < last else { return }
        let word = nanoseconds << 8 | UInt64(event.rawValue + 1)
        for page in Int((first - address) >> 12)..<Int((last - address + 4095) >> 12) {
            // The previous word first, so a reader never loses both.
            lastInvalidations[2 * page + 1].store(lastInvalidations[2 * page].load(ordering: .relaxed), ordering: .relaxed)
            lastInvalidations[2 * page].store(word, ordering: .releasing)
        }
    }

    /// The last invalidation of `page` at or before `nanoseconds`:
    /// `.known(nil)` if there was none, `.unknown` if two later ones have
    /// overwritten it (ask the trail's ring).
    func lastInvalidation(of page: Int, atOrBefore nanoseconds: UInt64) -> LastInvalidation {
        for slot in 0..<2 {
            let word = lastInvalidations[2 * page + slot].load(ordering: .acquiring)
            if word == 0 { return .known(nil) }
            if word >> 8 <= nanoseconds, let event = NotifierEvent(rawValue: UInt8(truncatingIfNeeded: word & 0xFF) &- 1) {
                return .known(InvalidationMark(event: event, nanoseconds: word >> 8))
            }
        }
        return .unknown
    }

    enum LastInvalidation {
        case known(InvalidationMark?)
        case unknown
    }

    /// Whether `address` is a page of this mapping.
    func contains(_ address: UInt64) -> Bool { address >= self.address && address < self.address + UInt64(pages) * 4096 }

    static let magic: UInt8 = 0xA5

    /// The 16-byte tag of a version of a page of this mapping, in place.
    func pageTag(page: Int, version: UInt32) -> PageTag {
        PageTag(page: UInt32(page), version: version, space: UInt32(spaceIndex), mapping: UInt32(mappingIndex))
    }

    /// The 16-byte tag of a version of a page of this mapping.
    func tag(page: Int, version: UInt32) -> [UInt8] { pageTag(page: page, version: version).bytes }

    /// What every duplicate page holds.
    var duplicateContent: [UInt8] { [UInt8](repeating: 0xD0, count: 15) + [Self.magic] }

    struct Decoded: Equatable {
        var page: UInt32
        var version: UInt32
        var space: UInt32
        var mapping: UInt32
    }

    /// The tag `tag` holds, if it carries the magic.
    static func decode(_ tag: PageTag) -> Decoded? {
        guard tag.magic == magic else { return nil }
        return Decoded(page: tag.page, version: tag.version, space: tag.space, mapping: tag.mapping)
    }

    static func decode(_ bytes: [UInt8]) -> Decoded? {
        guard bytes.count >= 16 else { return nil }
        return decode(PageTag(bytes))
    }
}
