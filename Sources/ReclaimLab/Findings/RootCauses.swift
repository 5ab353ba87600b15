import MMUNotifier

/// A page of an address space (its address rounded down to the page).
struct PageID: Hashable, Sendable {
    var space: AddressSpaceID
    var page: UInt64

    init(_ space: AddressSpaceID, _ address: UInt64) {
        self.space = space
        page = address >> 12
    }
}

/// What the tag oracle saw wrong on one read, waiting to learn whether the
/// primary's own check already flagged the access behind it.
struct Symptom: Sendable {
    /// The bug it is, if it turns out to be a bug of its own.
    var key: BugKey
    /// The page read.
    var page: PageID
    /// The page whose data the read found instead, if the data says
    /// (another page's or another address space's tag).
    var found: PageID?
    /// When the read began (absolute lab clock).
    var nanoseconds: UInt64
    /// The reading thread, for a device read (whose own access the primary
    /// may have flagged).
    var reader: Int32? = nil
    /// Its evidence, for the first few of its key.
    var evidence: Finding? = nil
}

/// The root causes the primary's DMA check found, by page, so the symptoms
/// of the same bad accesses can be attached to them (run loop only).
///
/// A device's read of page P that the primary flagged is a violation of
/// that thread on that page: each such violation is a credit, and a
/// symptom of a device read of P by the same thread takes one (the
/// violation was recorded during the access, before the symptom was
/// noted, and the run loop reads the violations after taking the
/// symptoms, so a symptom's own violation is always counted by then,
/// however late the run loop runs). Otherwise a symptom on page P that
/// found page Q's data is attached to the latest root cause on P or on Q
/// that happened no later than the read (with a little slack for the
/// two clocks' reading points):
/// - on P by another device: a device wrote P through a stale
///   translation, so P's frame never got that write (a lost write);
/// - on Q: a device wrote Q's data through a stale translation into a
///   frame that now backs P (a leak or another page's data).
/// There is no bound on how long before: data written through a stale
/// translation stays where it landed until someone reads it, which may be
/// seconds later. So a second, unrelated bug that breaks the same page
/// after the first is attached to the first; the first is the one to fix.
/// A symptom with no such root cause is a bug of its own.
struct RootCauses {
    static let slack: UInt64 = 1_000_000
    /// Pages remembered; past this the older half is forgotten (short-lived
    /// spaces bring new pages all the time).
    static let capacity = 1 << 20

    private struct Seen {
        var key: BugKey
        var nanoseconds: UInt64
    }

    /// Per page, the earliest and the latest root cause seen (a symptom
    /// may reach the run loop after later violations of its page did).
    private var byPage: [PageID: (first: Seen, last: Seen)] = [:]
    /// Per thread and page: violations not yet taken by a symptom, and the
    /// latest one's bug.
    private var credits: [ThreadPage: (count: Int, key: BugKey)] = [:]

    struct ThreadPage: Hashable {
        var thread: Int32
        var page: PageID
    }

    /// The primary flagged an access to `page` by thread `thread` at
    /// `nanoseconds` as bug `key`.
    mutating func record(_ page: PageID, _ key: BugKey, at nanoseconds: UInt64, by thread: Int32) {
        let pair = ThreadPage(thread: thread, page: page)
        credits[pair] = ((credits[pair]?.count ?? 0) + 1, key)
        let seen = Seen(key: key, nanoseconds: nanoseconds)
        if var known = byPage[page] {
            if nanoseconds < known.first.nanoseconds { known.first = seen }
            if nanoseconds >= known.last.nanoseconds { known.last = seen }
            byPage[page] = known
        } else {
            byPage[page] = (seen, seen)
        }
        if byPage.count > Self.capacity {
            let middle = byPage.values.map(\.last.nanoseconds).sorted()[byPage.count / 2]
            byPage = byPage.filter { $0.value.last.nanoseconds >= middle }
        }
    }

    /// The root cause `symptom` is a symptom of, if any: its own access, or
    /// on its page or the page whose data it found, the latest no later than
    /// the read.
    mutating func cause(of symptom: Symptom) -> BugKey? {
        if let reader = symptom.reader, let credit = credits[ThreadPage(thread: reader, page: symptom.page)], credit.count > 0 {
            credits[ThreadPage(thread: reader, page: symptom.page)] = (credit.count - 1, credit.key)
            return credit.key
        }
        let limit = symptom.nanoseconds + Self.slack
        let candidates = [byPage[symptom.page], symptom.found.flatMap { byPage[$0] }].compactMap { known -> Seen? in
            guard let known else { return nil }
            return known.last.nanoseconds <= limit ? known.last : known.first.nanoseconds <= limit ? known.first : nil
        }
        return candidates.max { $0.nanoseconds < $1.nanoseconds }?.key
    }


}
