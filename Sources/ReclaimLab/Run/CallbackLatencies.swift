import Histogram
import PluginHost
import Synchronization

/// Every callback duration of one plugin instance, per callback kind, in
/// HdrHistograms (three significant digits, 1 ns to 60 s).
///
/// Recording takes one uncontended-in-practice lock per callback kind;
/// a value beyond the histogram's range is clamped to its top, so nothing
/// is dropped silently.
final class CallbackLatencies: CallbackObserver {
    let plugin: String
    private let histograms: [Locked]
    /// One histogram and its lock (a `Mutex` cannot live in an array).
    private final class Locked: Sendable {
        let mutex: Mutex<Histogram<UInt64>>
        init(_ histogram: Histogram<UInt64>) { mutex = Mutex(histogram) }
    }
    private static let highest: UInt64 = 60_000_000_000

    init(plugin: String) {
        self.plugin = plugin
        histograms = PluginCallback.allCases.map { _ in
            Locked(Histogram<UInt64>(lowestDiscernibleValue: 1, highestTrackableValue: Self.highest, numberOfSignificantValueDigits: .three))
        }
    }

    func callbackReturned(_ callback: PluginCallback, nanoseconds: UInt64) {
        let value = min(max(nanoseconds, 1), Self.highest)
        histograms[callback.rawValue].mutex.withLock { _ = $0.record(value) }
    }

    /// The percentiles of each callback kind that was called at least once.
    var summary: [CallbackLatency] {
        PluginCallback.allCases.compactMap { callback in
            histograms[callback.rawValue].mutex.withLock { histogram -> CallbackLatency? in
                guard histogram.totalCount > 0 else { return nil }
                return CallbackLatency(
                    plugin: plugin, callback: callback.description, count: Int(histogram.totalCount),
                    p50: histogram.valueAtPercentile(50), p90: histogram.valueAtPercentile(90), p99: histogram.valueAtPercentile(99),
                    p999: histogram.valueAtPercentile(99.9), max: histogram.max)
            }
        }
    }
}
