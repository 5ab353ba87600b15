import Histogram
import LabSync
import MMUNotifier
import PluginHost

/// Every callback duration of one plugin instance, per callback kind, in
/// HdrHistograms (three significant digits, 1 ns to 60 s).
///
/// Recording takes a spin lock of the host's synchronisation layer per
/// callback kind (callbacks may run where sleeping is not allowed);
/// a value beyond the histogram's range is clamped to its top, so nothing
/// is dropped silently.
final class CallbackLatencies: CallbackObserver {
    let plugin: String
    private let histograms: [SpinLocked<Histogram<UInt64>>]
    private static let highest: UInt64 = 60_000_000_000
    /// The instance's aging check: told every young answer.
    let aging: AgingCheck?

    /// A context violation in one of this instance's callbacks names it so.
    var sectionSubjectName: String { plugin }

    init(plugin: String, domain: SyncDomain, aging: AgingCheck? = nil) {
        self.plugin = plugin
        self.aging = aging
        histograms = PluginCallback.allCases.map { callback in
            SpinLocked(
                Histogram<UInt64>(lowestDiscernibleValue: 1, highestTrackableValue: Self.highest, numberOfSignificantValueDigits: .three),
                name: "\(plugin) \(callback) latencies", domain: domain)
        }
    }

    func callbackReturned(_ callback: PluginCallback, nanoseconds: UInt64) {
        let value = min(max(nanoseconds, 1), Self.highest)
        histograms[callback.rawValue].withLock { _ = $0.record(value) }
    }

    func youngAnswered(addressSpace: AddressSpaceID, start: UInt64, end: UInt64, askedAt: Duration, young: Bool) {
        aging?.answered(space: addressSpace, start: start, end: end, askedAt: askedAt, young: young)
    }

    /// The percentiles of each callback kind that was called at least once.
    var summary: [CallbackLatency] {
        PluginCallback.allCases.compactMap { callback in
            histograms[callback.rawValue].withLock { histogram -> CallbackLatency? in
                guard histogram.totalCount > 0 else { return nil }
                return CallbackLatency(
                    plugin: plugin, callback: callback.description, count: Int(histogram.totalCount),
                    p50: histogram.valueAtPercentile(50), p90: histogram.valueAtPercentile(90), p99: histogram.valueAtPercentile(99),
                    p999: histogram.valueAtPercentile(99.9), max: histogram.max)
            }
        }
    }
}
