import Benchmark
import HotPaths
import MMUNotifier
import PluginHost
import Synchronization
import VirtualMemory

// Issue target: one notifier callback through the plugin ABI costs under
// 10 ns, for a C plugin and a Swift plugin alike, measured beside the same
// callback on an in-process Swift subscriber.

/// The in-process twin of the counting plugins.
final class InProcessCounter: AddressSpaceSubscriber {
    let starts = Atomic<UInt64>(0)
    func invalidateRangeStart(_ range: InvalidationRange) -> StartResult {
        starts.add(1, ordering: .relaxed)
        return .ok
    }
    func invalidateRangeEnd(_ range: InvalidationRange) {}
}

struct Fixture {
    let subscriber: any AddressSpaceSubscriber
    let range: InvalidationRange
    let keepAlive: [AnyObject]
}

func pluginFixture(_ file: String) -> Fixture {
    let path = PluginDiscovery.executableDirectory! + "/" + file
    let plugin = try! PluginLoader.load(path).get()
    let machine = Machine(.init(memory: .init(frames: 64, payloadSize: 16), swapSlots: 64))
    let space = machine.makeAddressSpace()
    let base = try! space.map(length: 4096, kind: .anonymousPrivate)
    let instance = try! PluginInstance.create(plugin, machine: machine).get()
    _ = try! instance.attach(addressSpace: space.id, start: base, length: 4096)
    let range = InvalidationRange(addressSpace: space.id, start: base, end: base + 4096, event: .vmscan)
    return Fixture(subscriber: instance.subscribers[0], range: range, keepAlive: [machine, space, instance])
}

nonisolated(unsafe) let cPlugin = pluginFixture("libmmulab-fixture-countingc.so")
nonisolated(unsafe) let swiftPlugin = pluginFixture("libmmulab-fixture-countingswift.so")
nonisolated(unsafe) let inProcess = Fixture(
    subscriber: InProcessCounter(),
    range: InvalidationRange(addressSpace: AddressSpaceID(1), start: 0x1000, end: 0x2000, event: .vmscan), keepAlive: [])

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
        metrics: [.wallClock],
        timeUnits: .nanoseconds,
        warmupIterations: 3,
        scalingFactor: .mega,
        maxDuration: .seconds(3),
        maxIterations: .count(200),
        thresholds: regressionTolerances
    )
    for (name, fixture) in [("C plugin through the ABI", cPlugin), ("Swift plugin through the ABI", swiftPlugin),
                            ("in-process Swift subscriber", inProcess)] {
        Benchmark("one invalidateRangeStart callback: \(name)") { benchmark in
            let subscriber = fixture.subscriber
            let range = fixture.range
            benchmark.startMeasurement()
            for _ in benchmark.scaledIterations {
                blackHole(subscriber.invalidateRangeStart(range))
            }
        }
    }

    // Issue 21, item 5: one device read of a resident page through the ABI
    // (the lab's access call, the plugin's table, the host's checked
    // dma_read), timed here and counted in instructions by
    // scripts/instruction-counts (same fixture).
    for (name, file) in [("C plugin (mirror-c)", "libmmulab-plugin-mirror-c.so"), ("Swift plugin (mirror-swift)", "libmmulab-plugin-mirror-swift.so")] {
        Benchmark(
            "one device read through the ABI: \(name)",
            configuration: .init(metrics: [.wallClock, .mallocCountTotal], timeUnits: .nanoseconds, warmupIterations: 3,
                                 scalingFactor: .kilo, maxDuration: .seconds(3), maxIterations: .count(200))
        ) { benchmark in
            let fixture = DeviceReadFixture(plugin: file)
            benchmark.startMeasurement()
            fixture.run(benchmark.scaledIterations.count)
        }
    }
}
