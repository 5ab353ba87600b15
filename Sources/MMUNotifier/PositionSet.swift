/// A set of positions in one dispatch (a subscriber's index in the list,
/// a callback's place in the start's order): a bitset with no limit on the
/// position. The first 64 live inline; later ones (only in a dispatch that
/// reaches past its 64th callback) in a box allocated then.
///
/// Trivially destructible, so `ActiveInvalidation` can still `discard
/// self` and a dispatch keeps it with no reference counting: the box is
/// released by `dispose()`, which whoever is done with the set calls once.
///
/// A dispatch uses it for the whole-space subscribers that answered retry
/// to a blockable start (they get no end), and for the positions of the
/// callbacks its recorder expects; the primary's record of an invalidation
/// in flight, for the callbacks that returned.
public struct PositionSet {
    @usableFromInline var low: UInt64 = 0
    @usableFromInline var more: Unmanaged<Overflow>? = nil

    @usableFromInline final class Overflow {
        @usableFromInline var words: [UInt64] = []
        init() {}
    }

    @inlinable public init() {}

    /// Whether `index` is in the set.
    @inlinable
    public func contains(_ index: Int) -> Bool {
        if index < 64 { return low & (1 << UInt64(index)) != 0 }
        guard let more else { return false }
        let word = (index - 64) / 64
        return more._withUnsafeGuaranteedRef { word < $0.words.count && $0.words[word] & (1 << UInt64((index - 64) % 64)) != 0 }
    }

    /// How many members are below `index` (so a member's number, counting
    /// from 0 in ascending order).
    @inline(__always)
    public func rank(of index: Int) -> Int {
        if index < 64 { return (low & ((1 << UInt64(index)) &- 1)).nonzeroBitCount }
        return low.nonzeroBitCount + rankBeyond(index)
    }

    private func rankBeyond(_ index: Int) -> Int {
        guard let more else { return 0 }
        let word = (index - 64) / 64
        let bit = UInt64((index - 64) % 64)
        return more._withUnsafeGuaranteedRef { overflow in
            var rank = 0
            for (i, bits) in overflow.words.enumerated() where i <= word {
                rank += (i < word ? bits : bits & ((1 << bit) &- 1)).nonzeroBitCount
            }
            return rank
        }
    }

    /// Adds `index`.
    @inlinable
    public mutating func insert(_ index: Int) {
        precondition(index >= 0)
        if index < 64 {
            low |= 1 << UInt64(index)
            return
        }
        insertBeyond(index)
    }

    @usableFromInline mutating func insertBeyond(_ index: Int) {
        let box = more ?? .passRetained(Overflow())
        more = box
        let word = (index - 64) / 64
        box._withUnsafeGuaranteedRef { overflow in
            if overflow.words.count <= word { overflow.words += [UInt64](repeating: 0, count: word + 1 - overflow.words.count) }
            overflow.words[word] |= 1 << UInt64((index - 64) % 64)
        }
    }

    /// Releases the overflow box, if any. Call once, when done.
    public func dispose() { more?.release() }
}
