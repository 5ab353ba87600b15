public import Synchronization

/// The names of a plugin's counters: an `Int` enum with the default raw
/// values (0, 1, 2, ... in the order the cases are declared), each case one
/// counter or gauge, the order the one ``PluginCounters/all`` lists them in.
///
///     enum NICCounter: Int, PluginCounterName {
///         case pageFaults, invalidations
///         var label: String {
///             switch self {
///             case .pageFaults: "page faults"
///             case .invalidations: "invalidations"
///             }
///         }
///     }
public protocol PluginCounterName: RawRepresentable<Int>, CaseIterable, Sendable {
    /// The counter's name in the plugin's statistics (`stat_get`).
    var label: String { get }
}

/// A plugin's counters and gauges (what ``DevicePlugin/statistics``
/// answers): one `Atomic<UInt64>` for each case of `Name`, updated and read
/// from any thread without a lock: `counters[.pageFaults].bump()`.
public final class PluginCounters<Name: PluginCounterName>: @unchecked Sendable {
    // @unchecked: `slots` is written only through its atomics; it is made in
    // init and freed in deinit, when nothing else holds the counters.
    @usableFromInline let slots: UnsafeMutablePointer<Atomic<UInt64>>
    private let count: Int

    /// Every counter at 0.
    public init() {
        let names = Array(Name.allCases)
        for (index, name) in names.enumerated() {
            // The raw value is the slot: the cases must number themselves 0, 1, 2, ...
            precondition(name.rawValue == index, "\(Name.self).\(name) has raw value \(name.rawValue), not its position \(index)")
        }
        count = names.count
        slots = .allocate(capacity: max(count, 1))
        for index in 0..<count { (slots + index).initialize(to: Atomic(0)) }
    }

    deinit {
        slots.deinitialize(count: count)
        slots.deallocate()
    }

    /// The counter `name`, in place (an atomic is never copied).
    @inlinable public subscript(name: Name) -> Atomic<UInt64> {
        unsafeAddress { UnsafePointer(slots + name.rawValue) }
    }

    /// Every counter by its label, in the order `Name` declares them, read relaxed.
    public var all: [(name: String, value: UInt64)] {
        Name.allCases.map { ($0.label, self[$0].load(ordering: .relaxed)) }
    }
}

extension Atomic<UInt64> {
    /// Adds `by` (relaxed): a counter's step.
    @inlinable public func bump(_ by: UInt64 = 1) { add(by, ordering: .relaxed) }
    /// Subtracts `by` (relaxed): a gauge going down.
    @inlinable public func drop(_ by: UInt64 = 1) { subtract(by, ordering: .relaxed) }
}
