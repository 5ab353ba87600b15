/// The whole-space subscribers that answered retry to a blockable start and
/// so get no end: a bitset by position in the dispatch's subscriber list,
/// with no limit on the position. The first 64 live inline; later ones
/// (only when a subscriber past the 64th refuses, which a correct one never
/// does) in a box allocated then.
///
/// Trivially destructible, so `ActiveInvalidation` can still `discard
/// self`: the box is released by `dispose()`, which whoever ends the
/// invalidation calls once.
struct SkippedSubscribers {
    private var low: UInt64 = 0
    private var more: Unmanaged<Overflow>? = nil

    final class Overflow {
        var words: [UInt64] = []
    }

    init() {}

    /// Whether the subscriber at `index` is in the set.
    @inline(__always)
    func contains(_ index: Int) -> Bool {
        if index < 64 { return low & (1 << UInt64(index)) != 0 }
        guard let more else { return false }
        let word = (index - 64) / 64
        let words = more._withUnsafeGuaranteedRef { $0.words }
        return word < words.count && words[word] & (1 << UInt64((index - 64) % 64)) != 0
    }

    /// Adds the subscriber at `index`.
    mutating func insert(_ index: Int) {
        precondition(index >= 0)
        if index < 64 {
            low |= 1 << UInt64(index)
            return
        }
        let box = more ?? .passRetained(Overflow())
        more = box
        let word = (index - 64) / 64
        box._withUnsafeGuaranteedRef { overflow in
            if overflow.words.count <= word { overflow.words += [UInt64](repeating: 0, count: word + 1 - overflow.words.count) }
            overflow.words[word] |= 1 << UInt64((index - 64) % 64)
        }
    }

    /// Releases the overflow box, if any. Call once, when done.
    func dispose() { more?.release() }
}
