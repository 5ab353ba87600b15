import LabSync
import MMUNotifier
import Synchronization
import VirtualMemory

/// The lab's own record of what the primary did to its address spaces: a
/// subscriber on each space writes every invalidation start and end,
/// KSM `change_pte`, young check and release into a bounded ring, so a
/// finding can show "the event trail that led there" (DESIGN.md, the
/// oracle), and counts invalidation starts by event for the progress line
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
        ring.withLock { ring in
            if let window, window.contains(entry.step), ring.windowEntries.count < 65_536 { ring.windowEntries.append(entry) }
            if kind == .start { ring.startsByEvent[Int(event.rawValue)] += 1 }
            Self.fold(&ring.digest, entry.nanoseconds)
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

    /// The digest of every entry recorded so far, in order.
    var digest: UInt64 { ring.withLock { $0.digest } }

    /// Invalidation starts so far, by event, for the events seen at least once.
    var invalidationsByEvent: [(event: String, count: Int)] {
        let counts = ring.withLock { $0.startsByEvent }
        return NotifierEvent.allCases.filter { counts[Int($0.rawValue)] > 0 }.map { ("\($0)", counts[Int($0.rawValue)]) }
    }

    /// The last `limit` entries that touched the page at `address` of
    /// `space`, oldest first, as lines a person reads.
    func trail(space: AddressSpaceID, address: UInt64, limit: Int = 10) -> [String] {
        let page = address & ~4095
        let found: [Entry] = ring.withLock { ring in
            var found: [Entry] = []
            let count = ring.entries.count
            var index = ring.next
            for _ in 0..<count where found.count < limit {
                index = (index - 1 + count) % count
                let entry = ring.entries[index]
                if entry.space == space, entry.start < page + 4096, entry.end > page { found.append(entry) }
            }
            return found
        }
        return found.reversed().map { Self.describe($0) }
    }

    /// The entries kept for the replay window, as (step, text), in order.
    var windowLines: [(step: UInt64, text: String)] {
        ring.withLock { $0.windowEntries }.map { ($0.step, "\(Self.describe($0, timed: false)) on \($0.space)") }
    }

    private static func describe(_ entry: Entry, timed: Bool = true) -> String {
        let at = timed ? "t=\(entry.nanoseconds / 1_000) µs " : ""
        let range = "[0x\(String(entry.start, radix: 16)), 0x\(String(entry.end, radix: 16)))"
        switch entry.kind {
        case .start: return "\(at)invalidate start \(entry.event) \(range)\(entry.blockable ? "" : " non-blockable")"
        case .end: return "\(at)invalidate end \(entry.event) \(range)"
        case .changePTE: return "\(at)change_pte (KSM merge) \(range)"
        case .youngCheck: return "\(at)clear_young (reclaim asked the devices) \(range)"
        case .release: return "\(at)release (address space exit)"
        }
    }
}

/// Monotonic nanoseconds since the run began, shared by every actor: the
/// synchronisation domain's clock (virtual under a controlled scheduler).
struct LabClock: Sendable {
    let domain: SyncDomain
    let origin: Duration
    init(domain: SyncDomain) {
        self.domain = domain
        origin = domain.now()
    }
    var nanoseconds: UInt64 {
        let elapsed = (domain.now() - origin).components
        return UInt64(elapsed.seconds) &* 1_000_000_000 &+ UInt64(elapsed.attoseconds / 1_000_000_000)
    }
}

/// The lab's subscriber on one address space: it records, never refuses,
/// never sleeps, and owns no translations. It also runs the hot-page check
/// (seed 003: "never invalidate a page that a device still uses hot").
final class TrailSubscriber: AddressSpaceSubscriber {
    let trail: EventTrail
    let space: AddressSpaceID
    /// The space's mappings whose pages devices use hot.
    let hotMappings: [TrackedMapping]
    let findings: FindingLog
    let subscriberName = "mmulab event trail"
    /// Declared so reclaim's young checks reach it (it always answers "not young").
    let capabilities: SubscriberCapabilities = [.youngTracking]

    init(trail: EventTrail, space: AddressSpaceID, hotMappings: [TrackedMapping], findings: FindingLog) {
        self.trail = trail
        self.space = space
        self.hotMappings = hotMappings
        self.findings = findings
    }

    func invalidateRangeStart(_ range: InvalidationRange) -> StartResult {
        trail.record(.start, range.addressSpace, range.start, range.end, event: range.event, blockable: range.blockable)
        if range.event == .vmscan { checkHotPages(range) }
        return .ok
    }

    func invalidateRangeEnd(_ range: InvalidationRange) {
        trail.record(.end, range.addressSpace, range.start, range.end, event: range.event, blockable: range.blockable)
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
                findings.note(
                    .hotPageEvicted,
                    "reclaim evicted page \(page) of a hot mapping at 0x\(String(mapping.address + UInt64(page) * 4096, radix: 16)) "
                        + "\((now - used) / 1_000) µs after a device used it, without asking the devices whether it was young (clear_young)",
                    place: mapping.place(of: page), trail: trail.trail(space: space, address: mapping.address + UInt64(page) * 4096))
            }
        }
    }
}
