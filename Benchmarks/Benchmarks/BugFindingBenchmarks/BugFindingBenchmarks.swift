import Benchmark
import PluginHost
import ReclaimLab
import Synchronization
import VirtualMemory

// Issue 21, item 4: how fast the lab finds a known bug, the figure that
// matters most to a user. For every `BrokenMirror` bug and every fault
// switch, runs of its matching scenario, one seed an iteration (seeds 1 to
// `seeds`): the lab time from the run's start to the first finding
// (`Bug.firstSeenSeconds`, the earliest bug of the run). The benchmark's
// p50 is the median over the seeds, its max the worst. Target: median
// under 0.5 s, worst under 5 s.
//
// A run stops soon after its first finding (nothing after it counts here).
// A run that finds nothing within `runSeconds` records `missedSeconds`, so a
// miss shows as a worst case past the target, never as a fast find.

/// Lab time to the first finding, in milliseconds.
let timeToFirstFinding = BenchmarkMetric.custom("ms to first finding", polarity: .prefersSmaller, useScalingFactor: false)

/// Seeds per case (one iteration each).
let seeds = 10

/// How long a run may look for its bug.
let runSeconds = 5.0

/// What a miss records: past every target, and plainly not a time a run took.
let missedSeconds = 99.0

/// One bug or fault switch and the scenario that should find it (the
/// README's table of built-in scenarios; the same cases as
/// scripts/bug-finding-speed).
struct Case: Sendable {
    var name: String
    var scenario: String
    var faults: MemoryFaultInjection = []
    var brokenMirrorBug: String? = nil
    /// How long a run may look for it (default `runSeconds`).
    var seconds = runSeconds
}

let cases: [Case] = [
    Case(name: "free-before-invalidate", scenario: "reclaim-storm", faults: .freeBeforeInvalidate),
    Case(name: "skip-range-end", scenario: "munmap-race", faults: .skipRangeEnd),
    // A device write to a long-term pinned page whose dirty report is lost
    // shows only when the pin ends and the page is written back: in
    // dirty-writeback, at teardown (the pinned NIC holds its pins for the
    // whole run). A run finds it at its end, whatever its length, so a
    // campaign hunting it runs short runs, and so does this case.
    Case(name: "drop-secondary-dirty", scenario: "dirty-writeback", faults: .dropSecondaryDirty, seconds: 0.3),
    Case(name: "skip-young-check", scenario: "young-aging", faults: .skipYoungCheck),
    Case(name: "bug=stale", scenario: "reclaim-storm", brokenMirrorBug: "stale"),
    Case(name: "bug=no-dirty", scenario: "reclaim-storm", brokenMirrorBug: "no-dirty"),
    Case(name: "bug=sleep", scenario: "oom-reaper", brokenMirrorBug: "sleep"),
    Case(name: "bug=zap-at-end", scenario: "munmap-race", brokenMirrorBug: "zap-at-end"),
    Case(name: "bug=zero-page", scenario: "munmap-race", brokenMirrorBug: "zero-page"),
    Case(name: "bug=ignore-wp", scenario: "mprotect-flip", brokenMirrorBug: "ignore-wp"),
    Case(name: "bug=not-young", scenario: "young-aging", brokenMirrorBug: "not-young"),
    Case(name: "bug=ignore-release", scenario: "exit-release", brokenMirrorBug: "ignore-release"),
    Case(name: "bug=lazy-free", scenario: "lazy-free-churn", brokenMirrorBug: "lazy-free"),
    Case(name: "bug=longterm-pfn", scenario: "longterm-pins", brokenMirrorBug: "longterm-pfn"),
    Case(name: "bug=keep-exclusive", scenario: "device-atomics", brokenMirrorBug: "keep-exclusive"),
    Case(name: "bug=ignore-mremap", scenario: "mremap-move", brokenMirrorBug: "ignore-mremap"),
    Case(name: "bug=huge-split", scenario: "thp-storm", brokenMirrorBug: "huge-split"),
    Case(name: "bug=late-dirty", scenario: "dirty-writeback", brokenMirrorBug: "late-dirty"),
    Case(name: "bug=stale-ref", scenario: "munmap-race", brokenMirrorBug: "stale-ref"),
]

/// The lab seconds from the start of a run of `entry` with `seed` to its
/// first finding; nil if it found nothing in the case's run length.
func secondsToFirstFinding(_ entry: Case, seed: UInt64) throws -> Double? {
    guard var scenario = try Catalogue.scenario(named: entry.scenario) else {
        fatalError("no \(entry.scenario) scenario in the catalogue")
    }
    if let bug = entry.brokenMirrorBug { scenario = try scenario.adding(plugin: "mirror-broken", options: "bug=\(bug)") }
    var options = RunOptions()
    options.seed = seed
    options.seconds = entry.seconds
    options.faults = entry.faults
    // The plugins are built beside this executable (see Package.swift).
    options.pluginDirectory = PluginDiscovery.executableDirectory
    // Stop once the first finding is in: the progress callback sees it
    // within one interval, and the run ends at the actors' next round.
    let found = Atomic<Bool>(false)
    options.progressInterval = .milliseconds(5)
    options.progress = { progress in if progress.findings > 0 { found.store(true, ordering: .relaxed) } }
    options.stopRequested = { found.load(ordering: .relaxed) }
    let result = try ScenarioRunner.run(scenario, options: options)
    return result.bugs.map(\.firstSeenSeconds).min()
}

let benchmarks: @Sendable () -> Void = {
    Benchmark.defaultConfiguration = .init(
        metrics: [timeToFirstFinding],
        units: [timeToFirstFinding: .count],
        warmupIterations: 0,
        maxDuration: .seconds(Int(runSeconds) * seeds * 2),
        maxIterations: .count(seeds),
        // scripts/benchmark-regressions: free-running times to a finding
        // vary from run to run by tens of milliseconds; a regression is a
        // median a quarter of a second later, or a worst case 2.5 s later,
        // than the baseline's (half the targets' margins).
        thresholds: [timeToFirstFinding: BenchmarkThresholds(absolute: [.p50: 250, .p100: 2_500])]
    )

    for entry in cases {
        Benchmark("\(entry.name) (\(entry.scenario)), \(seeds) seeds of \(entry.seconds) s") { benchmark in
            // The benchmark package counts its iterations from zero; seed = iteration + 1.
            let seed = UInt64(benchmark.currentIteration + 1)
            let seconds = try secondsToFirstFinding(entry, seed: seed) ?? missedSeconds
            benchmark.measurement(timeToFirstFinding, Int((seconds * 1000).rounded()))
        }
    }
}
