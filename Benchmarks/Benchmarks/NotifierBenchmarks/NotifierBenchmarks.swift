import Benchmark
import LabSync
import MMUNotifier

// Issue targets:
// - start+end dispatch with 10,000 subscribers on other address spaces within
//   5% of the case with none (lookup is per address space: Andrea Arcangeli,
//   linux-kernel/kvm-devel, 2008-01-24, "Re: [kvm-devel] [PATCH] export notifier #1");
// - a lookup in an interval tree of 1,000,000 intervals under 300 ns.

/// The cheapest possible subscriber, so the benchmark measures the core.
final class NullSubscriber: AddressSpaceSubscriber {
    func invalidateRangeStart(_ range: InvalidationRange) -> StartResult { .ok }
    func invalidateRangeEnd(_ range: InvalidationRange) {}
}

/// One dispatch target plus `others` subscribers, each on its own address space.
struct DispatchFixture {
    let target: AddressSpaceNotifiers
    let range: InvalidationRange
    let others: [AddressSpaceNotifiers]

    init(others count: Int) {
        let core = NotifierCore()
        target = core.makeAddressSpaceNotifiers(for: AddressSpaceID(0))
        try! target.register(NullSubscriber())
        range = InvalidationRange(addressSpace: AddressSpaceID(0), start: 0x10_0000, end: 0x10_1000, event: .vmscan)
        others = (0..<count).map { index in
            let notifiers = core.makeAddressSpaceNotifiers(for: AddressSpaceID(UInt64(index + 1)))
            try! notifiers.register(NullSubscriber())
            return notifiers
        }
    }
}

nonisolated(unsafe) let fixtures: [Int: DispatchFixture] = [0: .init(others: 0), 100: .init(others: 100), 10_000: .init(others: 10_000)]

/// A million disjoint 4 KiB intervals, 8 KiB apart, inserted in a shuffled
/// order (as devices register ranges in no particular order).
nonisolated(unsafe) let millionIntervals: IntervalTree = {
    let tree = IntervalTree()
    var order = Array(0..<1_000_000)
    var rng = SplitMix64(seed: 7)
    order.shuffle(using: &rng)
    for i in order { tree.insert(start: UInt64(i) * 8192, end: UInt64(i) * 8192 + 4096, handle: UInt32(i)) }
    return tree
}()

/// What scripts/benchmark-regressions lets pass against a stored baseline
/// (the benchmark package's threshold tolerances): times within 10% at the
/// median and p75 (run-to-run noise on an idle machine), allocation counts
/// within a handful.
var tenPercent: BenchmarkThresholds { BenchmarkThresholds(relative: [.p50: 10.0, .p75: 10.0]) }
var regressionTolerances: [BenchmarkMetric: BenchmarkThresholds] {
    [.wallClock: tenPercent, .mallocCountTotal: BenchmarkThresholds(absolute: [.p50: 16, .p75: 16])]
}

let benchmarks: @Sendable () -> Void = {
    Benchmark.defaultConfiguration = .init(
        metrics: [.wallClock, .throughput],
        timeUnits: .nanoseconds,
        warmupIterations: 3,
        scalingFactor: .kilo,
        maxDuration: .seconds(2),
        maxIterations: .count(100_000),
        thresholds: regressionTolerances
    )

    for others in [0, 100, 10_000] {
        Benchmark("dispatch start+end, \(others) subscribers on other address spaces") { benchmark in
            let fixture = fixtures[others]!
            benchmark.startMeasurement()
            for _ in benchmark.scaledIterations {
                fixture.target.startInvalidation(fixture.range).end()
            }
        }
    }

    Benchmark("interval tree lookup, 1,000,000 intervals, random page") { benchmark in
        let tree = millionIntervals
        var rng = SplitMix64(seed: 11)
        let queries = (0..<4096).map { _ in UInt64.random(in: 0..<2_000_000, using: &rng) * 4096 }
        var found = 0
        benchmark.startMeasurement()
        for i in benchmark.scaledIterations {
            let q = queries[i & 4095]
            tree.forEachOverlap(start: q, end: q + 4096) { found &+= Int($0) }
        }
        benchmark.stopMeasurement()
        blackHole(found)
    }
}
