import TestSupport
import LabSync
import MMUNotifier
import Testing

@Suite("IntervalTree against a brute-force model")
struct IntervalTreeTests {
    struct Interval: Hashable {
        var start: UInt64
        var end: UInt64
        var handle: UInt32
    }

    func bruteForce(_ model: Set<Interval>, _ qs: UInt64, _ qe: UInt64) -> [UInt32] {
        model.filter { $0.start < qe && $0.end > qs }
            .sorted { ($0.start, $0.handle) < ($1.start, $1.handle) }
            .map(\.handle)
    }

    @Test(arguments: [0, 1, 2, 3])
    func randomOperationsMatchTheModelAndKeepTheInvariants(streamIndex: Int) throws {
        var rng = SplitMix64.stream(streamIndex, of: testSeed)
        let tree = IntervalTree()
        var model = Set<Interval>()
        var nextHandle: UInt32 = 0
        let operations = 6_000 * stressScale
        // Stream 0 and 1: short, mostly disjoint ranges; 2 and 3: long ones that overlap a lot.
        let maxLength: UInt64 = streamIndex < 2 ? 64 : 50_000
        for step in 0..<operations {
            let roll = Int.random(in: 0..<10, using: &rng)
            if roll < 6 || model.isEmpty {
                let start = UInt64.random(in: 0..<100_000, using: &rng)
                let interval = Interval(
                    start: start, end: start + UInt64.random(in: 1...maxLength, using: &rng), handle: nextHandle)
                nextHandle += 1
                tree.insert(start: interval.start, end: interval.end, handle: interval.handle)
                model.insert(interval)
            } else {
                let victim = model.randomElement(using: &rng)!
                #expect(tree.remove(start: victim.start, end: victim.end, handle: victim.handle))
                model.remove(victim)
            }
            if step % 97 == 0 {
                let violation = tree.invariantViolation()
                try #require(violation == nil, "seed \(testSeed) stream \(streamIndex) step \(step): \(violation!)")
            }
            if step % 7 == 0 {
                let qs = UInt64.random(in: 0..<110_000, using: &rng)
                let qe = qs + UInt64.random(in: 1...5_000, using: &rng)
                try #require(
                    tree.overlaps(start: qs, end: qe) == bruteForce(model, qs, qe),
                    "seed \(testSeed) stream \(streamIndex) step \(step): query [\(qs), \(qe))")
            }
        }
        #expect(tree.count == model.count)
        #expect(tree.invariantViolation() == nil)
        // Drain it completely: the tree must shrink back to nothing.
        for interval in model { #expect(tree.remove(start: interval.start, end: interval.end, handle: interval.handle)) }
        #expect(tree.isEmpty && tree.height == 0)
    }

    @Test func boundariesAreHalfOpen() {
        let tree = IntervalTree()
        tree.insert(start: 10, end: 20, handle: 1)
        #expect(tree.overlaps(start: 0, end: 10).isEmpty)
        #expect(tree.overlaps(start: 20, end: 30).isEmpty)
        #expect(tree.overlaps(start: 19, end: 20) == [1])
        #expect(tree.overlaps(start: 0, end: 11) == [1])
        #expect(tree.overlapsAny(start: 15, end: 16))
    }

    @Test func removingSomethingAbsentChangesNothing() {
        let tree = IntervalTree()
        tree.insert(start: 0, end: 10, handle: 1)
        #expect(!tree.remove(start: 0, end: 10, handle: 2))
        #expect(!tree.remove(start: 0, end: 11, handle: 1))
        #expect(!tree.remove(start: 5, end: 10, handle: 1))
        #expect(tree.count == 1)
        #expect(tree.remove(start: 0, end: 10, handle: 1))
        #expect(!tree.remove(start: 0, end: 10, handle: 1))
    }

    @Test func equalStartsAreOrderedByHandleAndAllFound() {
        let tree = IntervalTree()
        for handle in (0..<200).reversed() { tree.insert(start: 100, end: 200 + UInt64(handle), handle: UInt32(handle)) }
        #expect(tree.overlaps(start: 0, end: 101) == (0..<200).map(UInt32.init))
        #expect(tree.overlaps(start: 390, end: 1000) == (191..<200).map(UInt32.init))
        #expect(tree.invariantViolation() == nil)
    }

    @Test func aMillionDisjointIntervalsStayShallow() {
        let tree = IntervalTree()
        let count = 1_000_000
        for i in 0..<count { tree.insert(start: UInt64(i) * 8192, end: UInt64(i) * 8192 + 4096, handle: UInt32(i)) }
        #expect(tree.count == count)
        #expect(tree.height <= 5, "fanout \(IntervalTree.fanout) keeps a million intervals shallow")
        #expect(tree.overlaps(start: 500_000 * 8192, end: 500_000 * 8192 + 1) == [500_000])
        #expect(tree.overlaps(start: 500_000 * 8192 + 4096, end: 500_001 * 8192).isEmpty)
    }
}
