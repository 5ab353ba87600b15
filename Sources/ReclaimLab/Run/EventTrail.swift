import LabSync
import MMUNotifier
import PluginHost
import Synchronization
import VirtualMemory

/// The lab's own record of what the primary did to its address spaces: a
/// subscriber on each space writes every invalidation start and end,
/// KSM `change_pte`, young check and release into a bounded ring, so a
/// finding can show the event trail that led there (docs/ORACLE.md, "Root
/// cause first"), and counts invalidation starts by event for the progress line
/// and the report's chart.
///
/// The ring holds the last `capacity` entries; older ones are overwritten.
/// Recording takes a spin lock of the host's synchronisation layer (it
/// runs inside non-blockable sections and must not sleep).
final class EventTrail: Sendable {
    struct Entry: Sendable {
        enum Kind: UInt8, Sendable { case start, end, changePTE, youngCheck, release }
        var nanoseconds: UInt64
        var space: AddressSpaceID
        var start: UInt64
        var end: UInt64
        var kind: Kind
        var event: NotifierEvent
        var blockable: Bool
        /// The scheduling step it was recorded at (0 when free-running).
        var step: UInt64 = 0
    }

    private struct Ring {
        var entries: [Entry] = []
        var next = 0
        var startsByEvent = [Int](repeating: 0, count: NotifierEvent.allCases.count)
        /// Every entry ever recorded, folded in order (not only the kept ones).
        var digest: UInt64 = 0xcbf2_9ce4_8422_2325
        /// The entries recorded at the steps of `window` (a replay's trace).
        var windowEntries: [Entry] = []
    }

    static let capacity = 32_768
    let clock: LabClock
    private let ring: SpinLocked<Ring>
    /// Steps whose entries are kept aside for a replay's trace (nil: none).
    let window: ClosedRange<UInt64>?

    init(clock: LabClock, domain: SyncDomain, window: ClosedRange<UInt64>? = nil) {
        self.clock = clock
        self.window = window
        ring = SpinLocked(Ring(), name: "event trail", domain: domain)
    }

    func record(_ kind: Entry.Kind, _ space: AddressSpaceID, _ start: UInt64, _ end: UInt64, event: NotifierEvent = .exit, blockable: Bool = true) {
        var entry = Entry(nanoseconds: clock.nanoseconds, space: space, start: start, end: end, kind: kind, event: event, blockable: blockable)
        if let step = clock.domain.currentStep { entry.step = step }
        // The plugin oops prints the last few (a lock-free ring it can read from a signal handler).
        PluginCrashReport.noteEvent(
            nanoseconds: clock.sinceStart(entry.nanoseconds), kind: kind.rawValue, event: event, blockable: blockable, addressSpace: space,
            start: start, end: end)
        ring.withLock { ring in
            if kind == .start { ring.startsByEvent[Int(event.rawValue)] += 1 }
            if let window, window.contains(entry.step), ring.windowEntries.count < 65_536 { ring.windowEntries.append(entry) }
            Self.fold(&ring.digest, entry.nanoseconds &- clock.origin)
            Self.fold(&ring.digest, entry.space.rawValue)
            Self.fold(&ring.digest, entry.start)
            Self.fold(&ring.digest, entry.end)
            Self.fold(&ring.digest, UInt64(kind.rawValue) << 16 | UInt64(event.rawValue) << 1 | (blockable ? 1 : 0))
            if ring.entries.count < Self.capacity {
                ring.entries.append(entry)
            } else {
                ring.entries[ring.next] = entry
            }
            ring.next = (ring.next + 1) % Self.capacity
        }
    }

    @inline(__always)
    private static func fold(_ digest: inout UInt64, _ word: UInt64) {
        digest = (digest ^ word) &* 0x0000_0100_0000_01B3
        digest ^= digest >> 31
    }

    /// The digest of every entry recorded so far, in order (times relative
    /// to the lab clock's making): two deterministic runs with equal
    /// digests saw the same events at the same virtual times.
    var digest: UInt64 { ring.withLock { $0.digest } }

    /// The entries kept for the replay window, as (step, text), in order.
    var windowLines: [(step: UInt64, text: String)] {
        ring.withLock { $0.windowEntries }.map { ($0.step, "\(Self.describeUntimed($0)) on \($0.space)") }
    }

    /// Invalidation starts so far, by event, for the events seen at least once.
    var invalidationsByEvent: [(event: String, count: Int)] {
        let counts = ring.withLock { $0.startsByEvent }
        return NotifierEvent.allCases.filter { counts[Int($0.rawValue)] > 0 }.map { ("\($0)", counts[Int($0.rawValue)]) }
    }

    /// The last `limit` entries that touched the page at `address` of
    /// `space` up to `upTo` (absolute lab clock; default: now), oldest first,
    /// as lines a person reads; with `access`, a last line for the bad
    /// access itself (what it was, as `BadAccess.text` says; when it
    /// reached memory, and when it began if that is known and earlier: the
    /// events between happened while the access was on its way).
    func trail(
        space: AddressSpaceID, address: UInt64, upTo: UInt64 = .max, access: (what: BadAccess, began: UInt64?, landed: UInt64)? = nil,
        limit: Int = 10
    ) -> [String] {
        let page = address & ~4095
        let found: [Entry] = ring.withLock { ring in
            var found: [Entry] = []
            let count = ring.entries.count
            var index = ring.next
            for _ in 0..<count where found.count < limit {
                index = (index - 1 + count) % count
                let entry = ring.entries[index]
                if entry.space == space, entry.start < page + 4096, entry.end > page, entry.nanoseconds <= upTo { found.append(entry) }
            }
            return found
        }
        // Oldest first by time: an entry's time is read before the ring's
        // lock, so two threads may record in the other order.
        var lines = found.sorted { $0.nanoseconds < $1.nanoseconds }.map(describe)
        if let access {
            var line = "\(clock.text(access.landed)) \(access.what.text)"
            if let began = access.began, clock.text(began) != clock.text(access.landed) { line += ", begun at \(clock.text(began))" }
            lines.append(line)
        }
        return lines
    }

    /// The bad access a trail ends with.
    enum BadAccess {
        /// A DMA read (`write` false) or write through the stale translation.
        case dma(write: Bool)
        /// A host service that marks the page (`set_dirty`, `mark_accessed`) on a freed frame.
        case mark(service: String)

        var text: String {
            switch self {
            case .dma(let write): "device \(write ? "write" : "read") through the stale translation (the bad access)"
            case .mark(let service): "device's \(service) on the freed frame (the bad call)"
            }
        }
    }

    /// The event of the last invalidation start (or release) of the page at
    /// `address` of `space` at or before `nanoseconds`, if the ring still
    /// holds one (a scan of the ring: for pages the lab does not track).
    func lastInvalidation(space: AddressSpaceID, address: UInt64, atOrBefore nanoseconds: UInt64) -> InvalidationMark? {
        let page = address & ~4095
        return ring.withLock { ring -> InvalidationMark? in
            let count = ring.entries.count
            var index = ring.next
            for _ in 0..<count {
                index = (index - 1 + count) % count
                let entry = ring.entries[index]
                guard entry.kind == .start || entry.kind == .release, entry.nanoseconds <= nanoseconds else { continue }
                if entry.space == space, entry.start < page + 4096, entry.end > page {
                    return InvalidationMark(event: entry.kind == .release ? .exit : entry.event, nanoseconds: entry.nanoseconds)
                }
            }
            return nil
        }
    }

    private static func describeUntimed(_ entry: Entry) -> String {
        let range = "[0x\(String(entry.start, radix: 16)), 0x\(String(entry.end, radix: 16)))"
        switch entry.kind {
        case .start: return "invalidate start \(entry.event) \(range)\(entry.blockable ? "" : " non-blockable")"
        case .end: return "invalidate end \(entry.event) \(range)"
        case .changePTE: return "change_pte (KSM merge) \(range)"
        case .youngCheck: return "clear_young (reclaim asked the devices) \(range)"
        case .release: return "release (address space exit)"
        }
    }

    private func describe(_ entry: Entry) -> String {
        let at = clock.text(entry.nanoseconds)
        let range = "[0x\(String(entry.start, radix: 16)), 0x\(String(entry.end, radix: 16)))"
        switch entry.kind {
        case .start: return "\(at) invalidate start \(entry.event) \(range)\(entry.blockable ? "" : " non-blockable")"
        case .end: return "\(at) invalidate end \(entry.event) \(range)"
        case .changePTE: return "\(at) change_pte (KSM merge) \(range)"
        case .youngCheck: return "\(at) clear_young (reclaim asked the devices) \(range)"
        case .release: return "\(at) release (address space exit)"
        }
    }
}

/// An invalidation of a page: its event, and when it started (absolute lab clock).
struct InvalidationMark: Sendable {
    var event: NotifierEvent
    var nanoseconds: UInt64
}

/// The lab's clock, shared by every actor: monotonic nanoseconds on one
/// scale for the whole run (`now`), and the instant the run began, set by
/// `start` as the actors start; reports give times relative to it
/// (what happened while the lab was set up comes out negative). It reads
/// the synchronisation domain's clock, the lab's only one (virtual under
/// a controlled scheduler, so a replay sees the same times).
final class LabClock: Sendable {
    let domain: SyncDomain
    /// When the clock was made (on its scale): the trail digest's zero.
    let origin: UInt64
    private let runStart = Atomic<UInt64>(0)

    init(domain: SyncDomain) {
        self.domain = domain
        origin = Self.absolute(domain)
        runStart.store(origin, ordering: .relaxed)
    }

    private static func absolute(_ domain: SyncDomain) -> UInt64 { domain.nowNanoseconds() }

    /// Nanoseconds now, on the clock's scale.
    var nanoseconds: UInt64 { Self.absolute(domain) }

    /// The run begins now.
    func start() { runStart.store(Self.absolute(domain), ordering: .releasing) }

    /// `absolute` (from `nanoseconds`) in nanoseconds since the run began (0 before).
    func sinceStart(_ absolute: UInt64) -> UInt64 {
        let origin = runStart.load(ordering: .relaxed)
        return absolute >= origin ? absolute - origin : 0
    }

    /// `absolute` (from `nanoseconds`) in seconds since the run began.
    func seconds(_ absolute: UInt64) -> Double {
        let origin = runStart.load(ordering: .acquiring)
        return absolute >= origin ? Double(absolute - origin) / 1e9 : -Double(origin - absolute) / 1e9
    }

    /// `t=1234 µs`: `absolute` in whole microseconds since the run began.
    func text(_ absolute: UInt64) -> String {
        let origin = runStart.load(ordering: .acquiring)
        return absolute >= origin ? "t=\((absolute - origin) / 1_000) µs" : "t=-\((origin - absolute) / 1_000) µs (set-up)"
    }
}

/// The lab's subscriber on one address space: it records, never refuses,
/// never sleeps, and owns no translations. It also runs the hot-page check
/// (docs/ORACLE.md, "Hot page evicted"; reclaim must ask the devices before
/// it evicts: Linux's `folio_referenced_one` calls
/// `ptep_clear_flush_young_notify`).
final class TrailSubscriber: AddressSpaceSubscriber {
    let trail: EventTrail
    let space: AddressSpaceID
    /// The space's tracked mappings: each keeps, per page, its last invalidation.
    let mappings: [TrackedMapping]
    /// Those whose pages devices use hot.
    let hotMappings: [TrackedMapping]
    let findings: BugTracker
    let subscriberName = "mmulab event trail"
    /// Declared so reclaim's young checks reach it (it always answers "not young").
    let capabilities: SubscriberCapabilities = [.youngTracking]

    /// The aging checks, told of every eviction.
    let aging: AgingChecks

    init(trail: EventTrail, space: AddressSpaceID, mappings: [TrackedMapping], findings: BugTracker, aging: AgingChecks) {
        self.trail = trail
        self.space = space
        self.mappings = mappings
        hotMappings = mappings.filter { $0.hot != nil }
        self.findings = findings
        self.aging = aging
    }

    func invalidateRangeStart(_ range: InvalidationRange) -> StartResult {
        trail.record(.start, range.addressSpace, range.start, range.end, event: range.event, blockable: range.blockable)
        let now = trail.clock.nanoseconds
        for mapping in mappings { mapping.noteInvalidation(range.event, start: range.start, end: range.end, at: now) }
        if range.event == .vmscan {
            checkHotPages(range)
            aging.evicting(space: range.addressSpace, start: range.start, end: range.end)
        }
        // From here the devices' callbacks may drop their translations and
        // accessed bits (KVM moves them to the page as it zaps), each at its
        // own callback, which may come after this one: a young check while
        // the range is still in progress (reclaim of a page a concurrent
        // mprotect or split covers) may rightly answer "not young".
        aging.invalidationBegan(space: range.addressSpace, start: range.start, end: range.end)
        return .ok
    }

    func invalidateRangeEnd(_ range: InvalidationRange) {
        trail.record(.end, range.addressSpace, range.start, range.end, event: range.event, blockable: range.blockable)
        aging.invalidationEnded(space: range.addressSpace, start: range.start, end: range.end)
    }

    func clearYoung(addressSpace: AddressSpaceID, start: UInt64, end: UInt64) -> Bool {
        for mapping in hotMappings { mapping.hot?.noteYoungCheck(mapping, start: start, end: end) }
        return false
    }

    func changePTE(addressSpace: AddressSpaceID, _ pte: PrimaryPTE) {
        trail.record(.changePTE, addressSpace, pte.address, pte.address + 4096, event: .ksm)
    }

    func release(addressSpace: AddressSpaceID) {
        trail.record(.release, addressSpace, 0, UInt64.max)
        let now = trail.clock.nanoseconds
        for mapping in mappings { mapping.noteInvalidation(.exit, start: 0, end: .max, at: now) }
    }

    /// Reclaim is unmapping `range` to evict it: a page of a hot mapping
    /// that a device used within the hot window, and about which reclaim
    /// asked no secondary (`clear_young`) since it was last evicted, was
    /// evicted blind. Reclaim that asks never trips this, whatever the
    /// timing: every eviction it decides follows a young check of the page.
    private func checkHotPages(_ range: InvalidationRange) {
        for mapping in hotMappings {
            guard let hot = mapping.hot else { continue }
            let first = max(range.start, mapping.address)
            let last = min(range.end, mapping.address + UInt64(mapping.pages) * 4096)
            guard first < last else { continue }
            let now = trail.clock.nanoseconds
            for page in Int((first - mapping.address) >> 12)..<Int((last - mapping.address) >> 12) {
                let asked = hot.takeYoungCheck(page)
                let used = hot.lastDeviceAccess[page].load(ordering: .acquiring)
                guard asked == 0, used > 0, now >= used, now - used <= HotPages.window else { continue }
                let key = BugKey(invariant: .hotPageEvicted, path: "vmscan of \(mapping.spaceName)/\(mapping.mappingName)")
                findings.note(key, at: now) {
                    Finding(
                        invariant: .hotPageEvicted,
                        detail: "reclaim evicted page \(page) of a hot mapping at 0x\(String(mapping.address + UInt64(page) * 4096, radix: 16)) "
                            + "\((now - used) / 1_000) µs after a device used it, without asking the devices whether it was young (clear_young)",
                        place: mapping.place(of: page), trail: trail.trail(space: space, address: mapping.address + UInt64(page) * 4096),
                        seconds: trail.clock.seconds(now), actor: ThreadIdentity.current.name)
                }
            }
        }
    }
}
