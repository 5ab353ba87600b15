public import LabSync
public import PluginHost
public import VirtualMemory

/// The page size of the model.
public let page: UInt64 = 4096

/// A bundled plugin's shared object, as built next to the test bundle.
public func bundledPluginPath(_ product: String) -> String {
    "\(PluginDiscovery.executableDirectory!)/lib\(product).so"
}

/// One loaded plugin on one machine with one address space: what
/// hmm-tests.c's fixture (a process and a dmirror device) is, for any of
/// the bundled plugins.
open class PluginFixture: @unchecked Sendable {
    // @unchecked: the members are immutable references to thread-safe objects.
    public let machine: Machine
    public let space: AddressSpace
    public let instance: PluginInstance

    public init(
        pluginPath: String, frames: Int, nodes: Int = 1, swapSlots: Int, faults: MemoryFaultInjection = [], options: String = ""
    ) throws {
        machine = Machine(.init(memory: .init(frames: frames, nodes: nodes, payloadSize: 16), swapSlots: swapSlots, faults: faults))
        space = machine.makeAddressSpace()
        let plugin = try PluginLoader.load(pluginPath).get()
        instance = try PluginInstance.create(plugin, machine: machine, options: options).get()
    }

    /// Maps `pages` anonymous pages (at a 2 MiB aligned address when asked)
    /// and binds them to the device.
    public func mapAndBind(
        pages: Int, aligned: Bool = false, write: Bool = true, pinned: Bool = false
    ) throws -> (UInt64, PluginInstance.Binding) {
        let base: UInt64
        if aligned {
            base = 0x40_0000_0000
            _ = try space.map(length: UInt64(pages) * page, kind: .anonymousPrivate, at: base)
        } else {
            base = try space.map(length: UInt64(pages) * page, kind: .anonymousPrivate)
        }
        let binding = try instance.attach(addressSpace: space.id, start: base, length: UInt64(pages) * page, write: write, pinned: pinned)
        return (base, binding)
    }

    public func deviceRead(_ binding: PluginInstance.Binding, _ address: UInt64) throws -> [UInt8] {
        var bytes = [UInt8](repeating: 0, count: 16)
        try bytes.withUnsafeMutableBytes { try instance.access(binding, deviceAddress: address, write: false, buffer: $0) }
        return bytes
    }

    public func deviceWrite(_ binding: PluginInstance.Binding, _ address: UInt64, _ bytes: [UInt8]) throws {
        var copy = bytes
        try copy.withUnsafeMutableBytes { try instance.access(binding, deviceAddress: address, write: true, buffer: $0) }
    }

    /// The plugin's counter `name` (a missing counter is a test bug).
    public func stat(_ name: String) -> UInt64 {
        guard let value = instance.statistics().first(where: { $0.name == name })?.value else {
            preconditionFailure("the plugin has no counter '\(name)'")
        }
        return value
    }

    /// Tears everything down and says what is wrong: frames still
    /// allocated (a leaked pin, page-table page or page), violations of
    /// the primary, of the notifier contract, or of contexts. Empty: clean.
    public func finish() -> [String] {
        var problems: [String] = []
        // kswapd holds the frames of a batch it has isolated until it is
        // done with them: they would look leaked.
        machine.stopBackgroundReclaim()
        instance.destroy()
        space.exit()
        for other in machine.addressSpaces { other.exit() }
        _ = machine.dropCaches()
        let left = machine.memory.allocatedFrames()
        if !left.isEmpty { problems.append("\(left.count) frames still allocated: \(left.prefix(4))") }
        let violations = machine.violations.snapshot
        if !violations.isEmpty { problems.append("violations: \(violations.prefix(4))") }
        let contract = machine.notifierCore.contractViolations.snapshot
        if !contract.isEmpty { problems.append("contract violations: \(contract.prefix(4))") }
        let context = machine.sync.contextViolations.snapshot
        if !context.isEmpty { problems.append("context violations: \(context.prefix(4))") }
        return problems
    }
}

/// The oracle's 16-byte tag: which page, which version.
public func tag(_ index: Int, _ version: UInt32) -> [UInt8] {
    var bytes = [UInt8](repeating: 0, count: 16)
    withUnsafeBytes(of: UInt32(index).littleEndian) { bytes.replaceSubrange(0..<4, with: $0) }
    withUnsafeBytes(of: version.littleEndian) { bytes.replaceSubrange(4..<8, with: $0) }
    bytes[15] = 0xA5
    return bytes
}

/// What a stress test's threads found wrong, collected from any thread
/// (the first 20; more would only repeat).
public final class Problems: Sendable {
    private let log: SpinLocked<[String]>

    public init(sync: SyncDomain) { log = SpinLocked([], name: "problems", domain: sync) }

    public func note(_ text: String) { log.withLock { if $0.count < 20 { $0.append(text) } } }

    public var all: [String] { log.withLock { $0 } }
}
