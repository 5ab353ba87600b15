import Benchmark
import PluginHost
import ReclaimLab

// Issue target: the reclaim-storm scenario (memory oversubscribed 2x, the
// three bundled plugins gpu, rdma and kvm active, every kind of pressure),
// with the oracle on, checks at least 2,000,000 accesses a second (CPU and
// device together, `RunResult.operations`) on a 2-core machine.

/// Checked accesses per second of one run, as the lab counts them: the
/// actors' accesses over the run's own elapsed time (setup and teardown are
/// outside both).
let checkedAccesses = BenchmarkMetric.custom("checked accesses/s", polarity: .prefersLarger, useScalingFactor: false)

/// How long each iteration's run lasts.
let runSeconds = 3.0

let benchmarks: @Sendable () -> Void = {
    Benchmark.defaultConfiguration = .init(
        metrics: [checkedAccesses, .wallClock, .peakMemoryResident, .mallocCountTotal],
        timeUnits: .milliseconds,
        units: [checkedAccesses: .count],
        warmupIterations: 0,
        maxDuration: .seconds(20),
        maxIterations: .count(3)
    )

    Benchmark("reclaim-storm, oracle on, gpu+rdma+kvm, \(Int(runSeconds)) s run") { benchmark in
        guard let scenario = try Catalogue.scenario(named: "reclaim-storm") else { fatalError("no reclaim-storm scenario in the catalogue") }
        var options = RunOptions()
        options.seed = 1
        options.seconds = runSeconds
        // The bundled plugins are built beside this executable (see Package.swift).
        options.pluginDirectory = PluginDiscovery.executableDirectory
        let result = try ScenarioRunner.run(scenario, options: options)
        // A run the oracle objects to is a broken lab or plugin, not a figure.
        guard result.isClean else {
            let shown = result.findings.prefix(20)
            let more = result.findingsTotal > shown.count ? "\n  ... and \(result.findingsTotal - shown.count) more" : ""
            fatalError(
                "reclaim-storm (seed \(result.seed)) has \(result.findingsTotal) findings; no figure from a failing run "
                    + "(replay: mmulab run reclaim-storm --seed \(result.seed) --duration \(Int(runSeconds))):\n"
                    + shown.map { "  \($0)" }.joined(separator: "\n") + more)
        }
        guard result.operations > 0, result.elapsedSeconds > 0 else {
            fatalError("reclaim-storm checked no accesses (\(result.operations) in \(result.elapsedSeconds) s)")
        }
        benchmark.measurement(checkedAccesses, Int((Double(result.operations) / result.elapsedSeconds).rounded()))
    }
}
