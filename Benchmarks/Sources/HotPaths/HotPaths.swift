import LabSync
import MMUNotifier
import PluginHost
import VirtualMemory

// The hot paths whose instruction counts the README records beside their
// times (issue 21, item 5): shared by the benchmarks, which time them, and
// by InstructionCounts, which runs them under callgrind. Each fixture is
// set up once; `run` repeats the operation.

/// The cheapest honest secondary MMU: one translation word per page in a
/// flat array, filled from the primary and cleared on every invalidation.
public final class FlatMirror: AddressSpaceSubscriber, @unchecked Sendable {
    public let base: UInt64
    public let pages: Int
    public let entries: UnsafeMutablePointer<UInt64>

    public init(base: UInt64, pages: Int) {
        self.base = base
        self.pages = pages
        entries = .allocate(capacity: pages)
        entries.initialize(repeating: 0, count: pages)
    }
    deinit { entries.deallocate() }

    public func invalidateRangeStart(_ range: InvalidationRange) -> StartResult {
        let end = base + UInt64(pages) * 4096
        let first = Int((max(range.start, base) - base) >> 12)
        let last = Int((min(range.end, end) - base + 4095) >> 12)
        if first < last { (entries + first).update(repeating: 0, count: last - first) }
        return .ok
    }
    public func invalidateRangeEnd(_ range: InvalidationRange) {}

    /// Takes a translation of every page (the range must be populated).
    public func populate(from space: AddressSpace) {
        let translations = try! space.faultRange(start: base, length: UInt64(pages) * 4096, write: true)
        for (i, t) in translations.enumerated() { entries[i] = t.frame.rawValue }
    }
}

/// One device read of a resident page through the plugin ABI: the lab's
/// `PluginInstance.access` calls the plugin's `access`, which translates
/// through its own table and reads with the host's `dma_read` (the
/// primary's check of the access under the page-table lock).
public final class DeviceReadFixture: @unchecked Sendable {
    public let machine: Machine
    public let space: AddressSpace
    public let instance: PluginInstance
    public let binding: PluginInstance.Binding
    public let pages: Int
    private let buffer: UnsafeMutableRawBufferPointer
    private var next = 0

    /// `plugin` is a file name beside the executable (`libmmulab-plugin-mirror-c.so`).
    public init(plugin file: String, pages: Int = 64) {
        let path = PluginDiscovery.executableDirectory! + "/" + file
        let plugin = try! PluginLoader.load(path).get()
        machine = Machine(.init(memory: .init(frames: pages + 256, payloadSize: 16), swapSlots: 0))
        space = machine.makeAddressSpace()
        let base = try! space.map(length: UInt64(pages) * 4096, kind: .anonymousPrivate)
        try! space.populate(start: base, length: UInt64(pages) * 4096, write: true)
        instance = try! PluginInstance.create(plugin, machine: machine).get()
        binding = try! instance.attach(addressSpace: space.id, start: base, length: UInt64(pages) * 4096)
        self.pages = pages
        buffer = .allocate(byteCount: 16, alignment: 16)
        // Every page once, so the device's table holds them all.
        for _ in 0..<pages { run(1) }
    }

    /// `count` device reads, round-robin over the pages.
    public func run(_ count: Int) {
        for _ in 0..<count {
            try! instance.access(binding, deviceAddress: binding.deviceAddress + UInt64(next) * 4096, write: false, buffer: buffer)
            next = next + 1 == pages ? 0 : next + 1
        }
    }
}

/// One `invalidateRangeStart` on a whole-space subscription of a plugin
/// loaded with `dlopen`, called the way the notifier core calls it (the
/// PluginCallbackBenchmarks fixture): the call frame the host runs every
/// plugin call in, the C ABI call, the plugin's callback.
public final class CallbackFixture: @unchecked Sendable {
    public let machine: Machine
    public let space: AddressSpace
    public let instance: PluginInstance
    public let subscriber: any AddressSpaceSubscriber
    public let range: InvalidationRange

    /// `plugin` is a file name beside the executable (`libmmulab-fixture-countingc.so`).
    public init(plugin file: String) {
        let path = PluginDiscovery.executableDirectory! + "/" + file
        let plugin = try! PluginLoader.load(path).get()
        machine = Machine(.init(memory: .init(frames: 64, payloadSize: 16), swapSlots: 64))
        space = machine.makeAddressSpace()
        let base = try! space.map(length: 4096, kind: .anonymousPrivate)
        instance = try! PluginInstance.create(plugin, machine: machine).get()
        _ = try! instance.attach(addressSpace: space.id, start: base, length: 4096)
        subscriber = instance.subscribers[0]
        range = InvalidationRange(addressSpace: space.id, start: base, end: base + 4096, event: .vmscan)
    }

    /// `count` start callbacks; fails if the plugin ever answers anything but `ok`.
    public func run(_ count: Int) {
        let subscriber = self.subscriber
        let range = self.range
        for _ in 0..<count {
            guard case .ok = subscriber.invalidateRangeStart(range) else { fatalError("the counting plugin must answer ok") }
        }
    }
}

/// One invalidation with a populated mirror: MADV_DONTNEED of one page of a
/// populated range a `FlatMirror` translates (the start and end callbacks,
/// the PTE cleared, the frame freed), then the page faulted back in, so the
/// next round finds it populated again.
public final class InvalidationFixture: @unchecked Sendable {
    public let machine: Machine
    public let space: AddressSpace
    public let mirror: FlatMirror
    public let base: UInt64
    public let pages: Int
    private var next = 0

    public init(pages: Int = 4_096) {
        machine = Machine(.init(memory: .init(frames: pages + 1_024, payloadSize: 16), swapSlots: 0))
        space = machine.makeAddressSpace()
        base = try! space.map(length: UInt64(pages) * 4096, kind: .anonymousPrivate)
        mirror = FlatMirror(base: base, pages: pages)
        try! space.notifiers.register(mirror)
        try! space.populate(start: base, length: UInt64(pages) * 4096, write: true)
        mirror.populate(from: space)
        self.pages = pages
    }

    /// `count` rounds of DONTNEED of one page and its re-fault.
    public func run(_ count: Int) {
        for _ in 0..<count {
            let address = base + UInt64(next) * 4096
            try! space.adviseDontNeed(start: address, length: 4096)
            try! space.populate(start: address, length: 4096, write: true)
            next = next + 1 == pages ? 0 : next + 1
        }
    }
}

/// The VirtualMemory benchmarks' model side: 262,144 pages mapped in one
/// address space (populated, with a `FlatMirror` subscribed and translating
/// every page, when `populated`), on a machine with room for all of them.
public final class BulkFixture: @unchecked Sendable {
    public static let pages = 262_144
    public let machine: Machine
    public let space: AddressSpace
    public let base: UInt64
    public let mirror: FlatMirror
    public var length: UInt64 { UInt64(Self.pages) * 4096 }

    public init(populated: Bool) {
        machine = Machine(.init(memory: .init(frames: Self.pages + 8_192, payloadSize: 16), swapSlots: 0))
        space = machine.makeAddressSpace()
        base = try! space.map(length: UInt64(Self.pages) * 4096, kind: .anonymousPrivate)
        mirror = FlatMirror(base: base, pages: Self.pages)
        try! space.notifiers.register(mirror)
        if populated {
            try! space.populate(start: base, length: UInt64(Self.pages) * 4096, write: true)
            mirror.populate(from: space)
        }
    }

    /// Faults every page in (`MADV_POPULATE_WRITE`); the fixture must not be populated.
    public func faultIn() { try! space.populate(start: base, length: length, write: true) }
    public func unmap() { try! space.unmap(start: base, length: length) }
    public func dontNeed() { try! space.adviseDontNeed(start: base, length: length) }
}
