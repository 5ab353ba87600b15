import LabSync

/// The notifier callbacks of a plugin that the host can time.
public enum PluginCallback: Int, Sendable, CaseIterable, CustomStringConvertible {
    case invalidateRangeStart
    case invalidateRangeEnd
    case intervalInvalidate
    case invalidateSecondaryTLBs
    case clearYoung
    case testYoung
    case changePTE
    case release
    case shrinkerScan

    /// The C ABI's name for it (`invalidate_range_start`, ...).
    public var description: String {
        switch self {
        case .invalidateRangeStart: "invalidate_range_start"
        case .invalidateRangeEnd: "invalidate_range_end"
        case .intervalInvalidate: "interval invalidate"
        case .invalidateSecondaryTLBs: "invalidate_secondary_tlbs"
        case .clearYoung: "clear_young"
        case .testYoung: "test_young"
        case .changePTE: "change_pte"
        case .release: "release"
        case .shrinkerScan: "shrinker scan"
        }
    }
}

/// Told how long each notifier callback of one plugin instance took
/// (the reclaim lab's latency histograms).
///
/// Called on the thread that made the callback, right after it returned,
/// possibly inside a non-blockable section: it must not sleep, and should
/// be cheap, since it runs on every invalidation.
public protocol CallbackObserver: AnyObject, Sendable {
    func callbackReturned(_ callback: PluginCallback, nanoseconds: UInt64)
}

/// Times `body` for `observer` (nothing extra when there is none) on the
/// host's clock (`clock.now()`: virtual under a controlled scheduler, so a
/// callback's latency there is the steps it took and the sleeps it slept).
@inline(__always)
func timed<Result>(_ callback: PluginCallback, _ observer: (any CallbackObserver)?, _ clock: SyncDomain, _ body: () -> Result) -> Result {
    guard let observer else { return body() }
    let start = clock.now()
    let result = body()
    let elapsed = (clock.now() - start).components
    observer.callbackReturned(callback, nanoseconds: UInt64(elapsed.seconds) &* 1_000_000_000 &+ UInt64(elapsed.attoseconds / 1_000_000_000))
    return result
}
