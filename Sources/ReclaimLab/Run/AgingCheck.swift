import LabSync
import MMUNotifier
import Synchronization

/// Aging that is checked, not trusted. Reclaim asks every secondary
/// `clear_young` (Linux: `clear_flush_young`) before it evicts a page; the
/// hot-pages check only proves it *asked*. For a plugin instance whose
/// subscriptions declare MMULAB_CAP_YOUNG (it becomes active at the first
/// answer; until then device accesses are not timed) this checks the
/// *answers*: the lab knows when
/// its device workloads used each page, so a check that answers "not young"
/// although the device used the page after the previous check of it ended
/// and before this one began is a finding (the device lost its accessed
/// bit, or never flushed the TLB that hid its accesses), and so is the
/// eviction that follows (the hot page it then lost).
///
/// Checks of one page are serialised (reclaim asks only about the pages its
/// frame is mapped at, under the space's young lock, as Linux asks under
/// the page-table lock), so "the previous check" is well defined; an
/// access counts only if it began after that check ended (or after the
/// last invalidation of the page began or ended, which may have taken the
/// device's translation and its accessed bit) and ended before this one
/// began, so a concurrent access never makes a false alarm. A check
/// answered while an invalidation of the page is in progress is not
/// judged at all: the device may keep using its translation until its own
/// callback (docs/ORACLE.md), which may come after the invalidation
/// began and after the access, and then rightly has nothing young to
/// report (KVM zaps the SPTE, and the accessed bit with it, in
/// `invalidate_range_start`).
final class AgingCheck: @unchecked Sendable {
    // @unchecked: arrays of atomics, allocated once; the rest immutable.
    /// The instance, as `RunResult.pluginStatistics` names it.
    let instance: String
    private let clock: SyncDomain
    private let findings: BugTracker
    private let trail: EventTrail
    private let mappings: [TrackedMapping]
    /// Where each of `mappings` is, as plain values: the per-invalidation
    /// scans read these, with no reference counting on the shared mapping
    /// objects.
    private let spans: [Span]
    private struct Span {
        let space: AddressSpaceID
        let address: UInt64
        let pages: Int
    }
    /// Per mapping, per page: (start, end) of the last device access that
    /// completed (clock nanoseconds), stored as one word pair.
    private let lastAccess: [UnsafeMutablePointer<Atomic<WordPair>>]
    /// Per mapping, per page: when the last young check of it ended.
    private let lastCheckEnd: [UnsafeMutablePointer<Atomic<UInt64>>]
    /// Per mapping, per page: the last check answered "not young" wrongly.
    private let misjudged: [UnsafeMutablePointer<Atomic<Bool>>]
    /// Per mapping, per page: invalidations of it begun and not ended yet.
    private let inProgress: [UnsafeMutablePointer<Atomic<Int32>>]
    /// Set at the first young answer: the instance tracks accessed bits.
    private let active = Atomic<Bool>(false)

    /// Whether device accesses are worth timing (the instance answers young checks).
    var isActive: Bool { active.load(ordering: .relaxed) }

    init(instance: String, mappings: [TrackedMapping], clock: SyncDomain, findings: BugTracker, trail: EventTrail) {
        self.instance = instance
        self.mappings = mappings
        spans = mappings.map { Span(space: $0.space.id, address: $0.address, pages: $0.pages) }
        self.clock = clock
        self.findings = findings
        self.trail = trail
        lastAccess = mappings.map { mapping in
            let pages = UnsafeMutablePointer<Atomic<WordPair>>.allocate(capacity: mapping.pages)
            for page in 0..<mapping.pages { (pages + page).initialize(to: Atomic(WordPair(first: 0, second: 0))) }
            return pages
        }
        lastCheckEnd = mappings.map { mapping in
            let pages = UnsafeMutablePointer<Atomic<UInt64>>.allocate(capacity: mapping.pages)
            for page in 0..<mapping.pages { (pages + page).initialize(to: Atomic(0)) }
            return pages
        }
        misjudged = mappings.map { mapping in
            let pages = UnsafeMutablePointer<Atomic<Bool>>.allocate(capacity: mapping.pages)
            for page in 0..<mapping.pages { (pages + page).initialize(to: Atomic(false)) }
            return pages
        }
        inProgress = mappings.map { mapping in
            let pages = UnsafeMutablePointer<Atomic<Int32>>.allocate(capacity: mapping.pages)
            for page in 0..<mapping.pages { (pages + page).initialize(to: Atomic(0)) }
            return pages
        }
    }

    deinit {
        for (index, mapping) in mappings.enumerated() {
            lastAccess[index].deinitialize(count: mapping.pages).deallocate()
            lastCheckEnd[index].deinitialize(count: mapping.pages).deallocate()
            misjudged[index].deinitialize(count: mapping.pages).deallocate()
            inProgress[index].deinitialize(count: mapping.pages).deallocate()
        }
    }

    /// The clock's nanoseconds now (never 0): `nanoseconds(clock.now())`,
    /// read without `Duration`'s 128-bit arithmetic.
    var now: UInt64 { max(clock.nowNanoseconds(), 1) }

    static func nanoseconds(_ duration: Duration) -> UInt64 {
        let (seconds, attoseconds) = duration.components
        return max(UInt64(max(seconds, 0)) &* 1_000_000_000 &+ UInt64(max(attoseconds, 0) / 1_000_000_000), 1)
    }

    /// Which of this check's mappings `mapping` is, if any.
    func index(of mapping: TrackedMapping) -> Int? { mappings.firstIndex { $0 === mapping } }

    /// The device finished using `page` of mapping `index`, having begun at `start`.
    func deviceUsed(mapping index: Int, page: Int, start: UInt64) {
        lastAccess[index][page].store(WordPair(first: UInt(start), second: UInt(now)), ordering: .releasing)
    }

    /// A young check of `[start, end)` asked at `askedAt` answered `young`.
    func answered(space: AddressSpaceID, start: UInt64, end: UInt64, askedAt: Duration, young: Bool) {
        if !active.load(ordering: .relaxed) { active.store(true, ordering: .relaxed) }
        let asked = Self.nanoseconds(askedAt)
        // When the check ended: read at the first tracked page (no clock
        // read for a range this instance tracks nothing of).
        var ended: UInt64 = 0
        forEachPage(space: space, start: start, end: end) { index, page in
            if ended == 0 { ended = now }
            let previous = lastCheckEnd[index][page].exchange(ended, ordering: .acquiringAndReleasing)
            // Young, or an invalidation of the page in progress (the
            // device's own callback may have dropped the translation
            // after the access): nothing to judge.
            guard !young, inProgress[index][page].load(ordering: .acquiring) <= 0 else { return }
            let access = lastAccess[index][page].load(ordering: .acquiring)
            let (used, done) = (UInt64(access.first), UInt64(access.second))
            guard done != 0, used > previous, done < asked else { return }
            misjudged[index][page].store(true, ordering: .releasing)
            let mapping = mappings[index]
            let address = mapping.address + UInt64(page) * 4096
            let at = trail.clock.nanoseconds
            findings.note(BugKey(invariant: .youngLost, instance: instance, path: "clear_young"), at: at) {
                Finding(
                    invariant: .youngLost,
                    detail: "\(instance) answered clear_young \"not young\" for page \(page) of \(mapping.spaceName)/\(mapping.mappingName) at 0x"
                        + String(address, radix: 16) + ", but its device used the page \((asked - done) / 1_000) µs before the check "
                        + "(after the previous check of the page ended): an accessed bit lost, or a TLB not flushed (clear_flush_young)",
                    place: mapping.place(of: page), trail: trail.trail(space: space, address: address), seconds: trail.clock.seconds(at),
                    actor: ThreadIdentity.current.name)
            }
        }
    }

    /// An invalidation of `[start, end)` of `space` began: a device may
    /// drop its translations there, and their accessed bits with them, once
    /// its own callback runs (the bundled KVM plugin does not pass the bit
    /// on to the page as it zaps; a plugin that does is not judged either).
    /// Until the invalidation ends, a "not young" answer there is not
    /// judged; accesses before now no longer bind the next answer.
    /// `began`: the clock when the invalidation began, read here at the
    /// first tracked page if still 0 (the caller shares one reading among
    /// its checks, and a range with no tracked page reads no clock).
    func invalidationBegan(space: AddressSpaceID, start: UInt64, end: UInt64, at began: inout UInt64) {
        forEachPage(space: space, start: start, end: end) { index, page in
            if began == 0 { began = now }
            inProgress[index][page].add(1, ordering: .acquiringAndReleasing)
            lastCheckEnd[index][page].store(began, ordering: .releasing)
        }
    }

    /// `invalidationBegan(space:start:end:at:)` with a clock reading of its own.
    func invalidationBegan(space: AddressSpaceID, start: UInt64, end: UInt64) {
        var began: UInt64 = 0
        invalidationBegan(space: space, start: start, end: end, at: &began)
    }

    /// An invalidation of `[start, end)` of `space` ended (every device's
    /// callback has returned): treated as a check of those pages. `ended`
    /// as `began` of `invalidationBegan`.
    func invalidationEnded(space: AddressSpaceID, start: UInt64, end: UInt64, at ended: inout UInt64) {
        forEachPage(space: space, start: start, end: end) { index, page in
            if ended == 0 { ended = now }
            lastCheckEnd[index][page].store(ended, ordering: .releasing)
            // Never below zero: a subscriber registered while an
            // invalidation was in flight hears its end without its start
            // (as in Linux, whose end walks the list as it is then).
            var count = inProgress[index][page].load(ordering: .relaxed)
            while count > 0 {
                let (exchanged, original) = inProgress[index][page].compareExchange(
                    expected: count, desired: count - 1, ordering: .acquiringAndReleasing)
                if exchanged { break }
                count = original
            }
        }
    }

    /// `invalidationEnded(space:start:end:at:)` with a clock reading of its own.
    func invalidationEnded(space: AddressSpaceID, start: UInt64, end: UInt64) {
        var ended: UInt64 = 0
        invalidationEnded(space: space, start: start, end: end, at: &ended)
    }

    /// Calls `body` with (mapping index, page) for each tracked page of `[start, end)` of `space`.
    private func forEachPage(space: AddressSpaceID, start: UInt64, end: UInt64, _ body: (Int, Int) -> Void) {
        for index in spans.indices where spans[index].space == space {
            let span = spans[index]
            let first = max(start, span.address)
            let last = min(end, span.address + UInt64(span.pages) * 4096)
            guard first < last else { continue }
            for page in Int((first - span.address) >> 12)..<Int((last - span.address) >> 12) { body(index, page) }
        }
    }

    /// Reclaim is evicting `[start, end)` of `space`: a page this check
    /// saw misjudged is a hot page lost.
    func evicting(space: AddressSpaceID, start: UInt64, end: UInt64) {
        forEachPage(space: space, start: start, end: end) { index, page in
            if misjudged[index][page].exchange(false, ordering: .acquiringAndReleasing) {
                let mapping = mappings[index]
                let address = mapping.address + UInt64(page) * 4096
                let at = trail.clock.nanoseconds
                let key = BugKey(invariant: .hotPageEvicted, instance: instance, path: "vmscan after a wrong \"not young\"")
                findings.note(key, at: at) {
                    Finding(
                        invariant: .hotPageEvicted,
                        detail: "reclaim evicted page \(page) of \(mapping.spaceName)/\(mapping.mappingName) at 0x" + String(address, radix: 16)
                            + ", which \(instance)'s device was using but reported not young",
                        place: mapping.place(of: page), trail: trail.trail(space: space, address: address), seconds: trail.clock.seconds(at),
                        actor: ThreadIdentity.current.name)
                }
            }
        }
    }
}

/// The aging checks of a run, one per plugin instance; filled while the
/// plugins load, read-only once the actors start.
final class AgingChecks: @unchecked Sendable {
    // @unchecked: written during setup only.
    var all: [AgingCheck] = []

    func evicting(space: AddressSpaceID, start: UInt64, end: UInt64) {
        for check in all { check.evicting(space: space, start: start, end: end) }
    }

    /// Tells every check; the clock is read once, and only if some check
    /// tracks a page of the range.
    func invalidationBegan(space: AddressSpaceID, start: UInt64, end: UInt64) {
        var began: UInt64 = 0
        for check in all { check.invalidationBegan(space: space, start: start, end: end, at: &began) }
    }

    /// As `invalidationBegan`.
    func invalidationEnded(space: AddressSpaceID, start: UInt64, end: UInt64) {
        var ended: UInt64 = 0
        for check in all { check.invalidationEnded(space: space, start: start, end: end, at: &ended) }
    }
}
