import CDevicePluginABI
import LabSync
import MMUNotifier
import Synchronization
import VirtualMemory

/// What a C subscription handle stands for.
final class SubscriptionRecord: @unchecked Sendable {
    // @unchecked: immutable but for `ended`, which is atomic.
    let subscriber: CSubscriber
    let notifiers: AddressSpaceNotifiers
    /// The binding in whose call it was made (0: none).
    let binding: UInt64
    let ended = Atomic<Bool>(false)

    init(subscriber: CSubscriber, notifiers: AddressSpaceNotifiers, binding: UInt64) {
        self.subscriber = subscriber
        self.notifiers = notifiers
        self.binding = binding
    }

    var what: String { "a whole-space subscription on \(notifiers.addressSpace)" }
}

/// What a C interval handle stands for (the handle is its address).
final class IntervalRecord: @unchecked Sendable {
    // @unchecked: `notifier` is set once, under the ledger's lock, before
    // the plugin has the handle from `interval_insert`; a callback that
    // comes first publishes the same notifier atomically (`publish`).
    let invalidator: CInterval
    let space: AddressSpaceID
    let start: UInt64
    let end: UInt64
    let binding: UInt64
    let removed = Atomic<Bool>(false)
    private var notifier: IntervalNotifier? = nil
    private let published = Atomic<UInt>(0)

    init(invalidator: CInterval, space: AddressSpaceID, start: UInt64, end: UInt64, binding: UInt64) {
        self.invalidator = invalidator
        self.space = space
        self.start = start
        self.end = end
        self.binding = binding
        invalidator.record = self
    }

    var opaque: UnsafeMutableRawPointer { Unmanaged.passUnretained(self).toOpaque() }
    var what: String { "an interval subscription on \(space) [0x\(String(start, radix: 16)), 0x\(String(end, radix: 16)))" }

    /// The notifier, kept from here on (after `insertInterval` returned).
    func keep(_ interval: IntervalNotifier) {
        notifier = interval
        publish(interval)
    }

    /// Makes the notifier reachable from the handle (callbacks call this first).
    @inline(__always)
    func publish(_ interval: IntervalNotifier) {
        let address = UInt(bitPattern: Unmanaged.passUnretained(interval).toOpaque())
        if published.load(ordering: .relaxed) != address { published.store(address, ordering: .releasing) }
    }

    /// The notifier: valid while the record lives (the record keeps it, or
    /// the address space's tree does until `insertInterval` returned).
    @inline(__always)
    var interval: IntervalNotifier {
        let address = published.load(ordering: .acquiring)
        return Unmanaged<IntervalNotifier>.fromOpaque(UnsafeRawPointer(bitPattern: address)!).takeUnretainedValue()
    }

    /// The record behind `handle`, or nil (reported) when it is NULL or removed.
    @inline(__always)
    static func checked(_ handle: OpaquePointer?, _ service: StaticString, allowRemoved: Bool = false) -> IntervalRecord? {
        guard let handle else {
            HostContext.reportUnattributed("\(service)", "the interval is NULL")
            return nil
        }
        let record = Unmanaged<IntervalRecord>.fromOpaque(UnsafeRawPointer(handle)).takeUnretainedValue()
        if !allowRemoved, record.removed.load(ordering: .acquiring) {
            record.invalidator.context.report("\(service)", "\(record.what) was removed (interval_remove) before this call")
            return nil
        }
        return record
    }
}

/// What a C shrinker handle stands for.
final class ShrinkerRecord: @unchecked Sendable {
    // @unchecked: immutable but for `unregistered`, which is atomic.
    let shrinker: CShrinker
    let binding: UInt64
    let unregistered = Atomic<Bool>(false)

    init(shrinker: CShrinker, binding: UInt64) {
        self.shrinker = shrinker
        self.binding = binding
    }

    var what: String { "shrinker '\(shrinker.shrinkerName)'" }
}

/// What one plugin instance holds of the host's, and which binding's call
/// made it (0: none: `create`, or a thread of the plugin's own).
///
/// Intervals and pins belong to the binding whose call made them: when
/// `detach` of that binding returns, any still held is left behind. A
/// whole-space subscription, a shrinker and a page-table page may serve
/// every binding of an address space (KVM's notifier, a GPU's page
/// tables), so they are the instance's: what is left when `destroy`
/// returns is left behind. Left behind is reported and then undone by the
/// host, so no callback reaches the plugin's freed memory.
struct ResourceLedger {
    var subscriptions: [ObjectIdentifier: SubscriptionRecord] = [:]
    var intervals: [ObjectIdentifier: IntervalRecord] = [:]
    var shrinkers: [ObjectIdentifier: ShrinkerRecord] = [:]
    /// By frame: each pin the instance holds on it.
    var pins: [Int32: [PinHold]] = [:]
    /// By frame: the page_get references the instance holds on it, by generation (ABI 1.6).
    var references: [Int32: [UInt32: Int]] = [:]
    /// Page-table pages the instance holds, by frame.
    var pageTablePages: [Int32: PageTableHold] = [:]
    /// Page-table pages it gave back since they were last handed out.
    var freedPageTablePages: Set<Int32> = []

    struct PinHold {
        var generation: UInt32
        var binding: UInt64
        var count: Int
        var writable: Bool
    }

    struct PageTableHold {
        var generation: UInt32
        var binding: UInt64
    }

    mutating func notePin(_ frame: Int32, generation: UInt32, binding: UInt64, writable: Bool) {
        var holds = pins[frame] ?? []
        if let index = holds.firstIndex(where: { $0.generation == generation && $0.binding == binding }) {
            holds[index].count += 1
        } else {
            holds.append(PinHold(generation: generation, binding: binding, count: 1, writable: writable))
        }
        pins[frame] = holds
    }

    /// Takes one pin of `frame` in `generation`, preferring `binding`'s;
    /// false if the instance holds none.
    mutating func takePin(_ frame: Int32, generation: UInt32, preferring binding: UInt64) -> Bool {
        guard var holds = pins[frame] else { return false }
        let candidates = holds.indices.filter { holds[$0].generation == generation && holds[$0].count > 0 }
        guard let index = candidates.first(where: { holds[$0].binding == binding }) ?? candidates.first else { return false }
        holds[index].count -= 1
        if holds[index].count == 0 { holds.remove(at: index) }
        pins[frame] = holds.isEmpty ? nil : holds
        return true
    }

    /// Takes one reference on `frame` in `generation`; false if the instance holds none.
    mutating func takeReference(_ frame: Int32, generation: UInt32) -> Bool {
        guard var held = references[frame], let count = held[generation], count > 0 else { return false }
        held[generation] = count > 1 ? count - 1 : nil
        references[frame] = held.isEmpty ? nil : held
        return true
    }

    /// Whether the instance holds a reference on `frame` in `generation`.
    func holdsReference(_ frame: Int32, generation: UInt32) -> Bool { (references[frame]?[generation] ?? 0) > 0 }

    /// Every pin held by `binding` (nil: any), taken out of the ledger, as
    /// translations to unpin.
    mutating func takePins(of binding: UInt64?) -> [(frame: Int32, hold: PinHold)] {
        var taken: [(Int32, PinHold)] = []
        for (frame, holds) in pins {
            let mine = holds.filter { binding == nil || $0.binding == binding }
            guard !mine.isEmpty else { continue }
            taken += mine.map { (frame, $0) }
            let rest = holds.filter { !(binding == nil || $0.binding == binding) }
            pins[frame] = rest.isEmpty ? nil : rest
        }
        return taken.sorted { $0.0 < $1.0 }
    }
}
