import LabSync
import MMUNotifier
import Testing
import TestSupport

/// The set of positions a dispatch and the primary's record of an
/// invalidation in flight keep: inline below 64, in a box past it.
@Suite("Position sets")
struct PositionSetTests {
    /// Random positions on both sides of 64 (and far past it): membership and
    /// rank agree with a plain `Set`, whatever order they were added in.
    @Test func membershipAndRankMatchASetAcrossTheInlineWords() {
        var random = SplitMix64(seed: testSeed)
        for round in 0..<(50 * stressScale) {
            var positions = PositionSet()
            var reference = Set<Int>()
            let limit = [64, 65, 128, 300][round % 4]
            for _ in 0..<Int(random.next() % 40) {
                let index = Int(random.next() % UInt64(limit))
                positions.insert(index)
                reference.insert(index)
            }
            for index in 0..<(limit + 70) {
                #expect(positions.contains(index) == reference.contains(index), "seed \(testSeed) round \(round): contains(\(index))")
                let rank = reference.filter { $0 < index }.count
                #expect(positions.rank(of: index) == rank, "seed \(testSeed) round \(round): rank(of: \(index))")
            }
            positions.dispose()
        }
    }
}
