public import LabSync
public import MMUNotifier

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
    public var description: String { "\(name)" }

    /// The same, as a static string (what a context violation inside the
    /// callback names: `CalleeFrame`).
    public var name: StaticString {
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
/// `callbackReturned` is called on the thread that made the callback, right
/// after it returned, possibly inside a non-blockable section: it must not
/// sleep, and should be cheap, since it runs on every invalidation.
/// A context violation inside a callback names the instance as
/// `PluginInstance.create(label:)` named it (its plugin's name by default).
public protocol CallbackObserver: SectionSubject, Sendable {
    func callbackReturned(_ callback: PluginCallback, nanoseconds: UInt64)
    /// A `clear_young` of `[start, end)` in `addressSpace`, asked at
    /// `askedAt` (the synchronisation domain's clock, read just before the
    /// call), answered `young`. Same contexts as `callbackReturned`.
    func youngAnswered(addressSpace: AddressSpaceID, start: UInt64, end: UInt64, askedAt: Duration, young: Bool)
}

/// Times `body` for `observer` on the host's clock (`clock.now()`: virtual
/// under a controlled scheduler, so a callback's latency there is the steps
/// it took and the sleeps it slept); nothing extra when there is no
/// observer. `callPlugin` marks the thread as running the instance's
/// callback around it.
@inline(__always)
func timed<Result>(_ callback: PluginCallback, _ observer: (any CallbackObserver)?, _ clock: SyncDomain, _ body: () -> Result) -> Result {
    guard let observer else { return body() }
    let start = clock.now()
    let result = body()
    let elapsed = (clock.now() - start).components
    observer.callbackReturned(callback, nanoseconds: UInt64(elapsed.seconds) &* 1_000_000_000 &+ UInt64(elapsed.attoseconds / 1_000_000_000))
    return result
}
