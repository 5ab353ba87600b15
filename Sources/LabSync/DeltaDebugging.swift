/// Delta debugging's ddmin (Zeller and Hildebrandt, "Simplifying and
/// Isolating Failure-Inducing Input", IEEE Transactions on Software
/// Engineering 28(2), 2002): cuts a failing set of items down to a subset
/// that still fails, trying halves, then quarters, and so on, each chunk
/// alone and the rest without it. What a shrinker uses on a failing run's
/// scheduling choices (`ScheduleChoices.keeping`) and on a scenario's parts.
///
/// Guarantees: the result fails (`test` answered true for it, or it is the
/// whole set, which the caller vouches for); with budget to spare it is
/// 1-minimal (dropping any one item makes it pass); the same `test` gives
/// the same tests in the same order, so the same result (the search is
/// deterministic); no subset is tested twice; at most `budget` tests run.
public enum DeltaDebugging {
    public struct Result: Sendable, Equatable {
        /// Indices (into the items, ascending) of the failing subset found.
        public var kept: [Int]
        /// Tests run.
        public var tests: Int
        /// Whether the search ended by finding no smaller failing subset (1-minimal),
        /// rather than by running out of budget.
        public var isMinimal: Bool
    }

    /// Minimises the items `0..<count`, all of which together fail.
    /// `test(indices)` (ascending) says whether that subset still fails.
    /// The empty subset is tried first.
    public static func minimize(count: Int, budget: Int, test: ([Int]) -> Bool) -> Result {
        precondition(count >= 0 && budget >= 0)
        var tests = 0
        var seen: Set<[Int]> = [Array(0..<count)]
        var outOfBudget = false
        /// Runs `test` on a subset not tried before, within the budget.
        func fails(_ subset: [Int]) -> Bool {
            guard !seen.contains(subset) else { return false }  // tried: it passed (a failing one would have been taken)
            guard tests < budget else {
                outOfBudget = true
                return false
            }
            seen.insert(subset)
            tests += 1
            return test(subset)
        }
        var current = Array(0..<count)
        guard count > 0 else { return Result(kept: [], tests: 0, isMinimal: true) }
        if fails([]) { return Result(kept: [], tests: tests, isMinimal: true) }
        var granularity = 2
        while current.count >= 2 && !outOfBudget {
            let chunks = split(current, into: granularity)
            var reduced = false
            for chunk in chunks where fails(chunk) {
                current = chunk
                granularity = 2
                reduced = true
                break
            }
            // With two chunks each complement is the other chunk, tried above.
            if !reduced && chunks.count > 2 {
                for index in chunks.indices {
                    let complement = chunks.enumerated().filter { $0.offset != index }.flatMap(\.element)
                    guard fails(complement) else { continue }
                    current = complement
                    granularity = max(granularity - 1, 2)
                    reduced = true
                    break
                }
            }
            if reduced || outOfBudget { continue }
            if granularity >= current.count { return Result(kept: current, tests: tests, isMinimal: true) }
            granularity = min(current.count, granularity * 2)
        }
        // One item left (the empty set passed): 1-minimal, unless the budget ran out first.
        return Result(kept: current, tests: tests, isMinimal: !outOfBudget)
    }

    /// `items` in `parts` contiguous chunks of nearly equal size (the first ones one longer).
    static func split(_ items: [Int], into parts: Int) -> [[Int]] {
        let parts = min(max(parts, 1), items.count)
        var chunks: [[Int]] = []
        var start = 0
        for part in 0..<parts {
            let size = items.count / parts + (part < items.count % parts ? 1 : 0)
            chunks.append(Array(items[start..<start + size]))
            start += size
        }
        return chunks
    }
}
