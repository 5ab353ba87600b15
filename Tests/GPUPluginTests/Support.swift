import LabSync
import MMUNotifier
import PluginHost
import TestSupport
import VirtualMemory

let page: UInt64 = 4096

/// The GPU plugin, as built next to the test bundle.
let gpuPluginPath = "\(PluginDiscovery.executableDirectory!)/libmmulab-plugin-gpu.so"

/// One GPU on one machine with one address space: what hmm-tests.c's
/// fixture (a process and a dmirror device) is.
final class GPUFixture: @unchecked Sendable {
    let machine: Machine
    let space: AddressSpace
    let gpu: PluginInstance

    init(frames: Int = 2048, swapSlots: Int = 8192, options: String = "") throws {
        machine = Machine(.init(memory: .init(frames: frames, nodes: 1, payloadSize: 16), swapSlots: swapSlots))
        space = machine.makeAddressSpace()
        let plugin = try PluginLoader.load(gpuPluginPath).get()
        gpu = try PluginInstance.create(plugin, machine: machine, options: options).get()
    }

    /// Maps `pages` anonymous pages (2 MiB aligned when asked) and binds them to the GPU.
    func mapAndBind(pages: Int, aligned: Bool = false, write: Bool = true) throws -> (UInt64, PluginInstance.Binding) {
        let base: UInt64
        if aligned {
            base = 0x40_0000_0000
            _ = try space.map(length: UInt64(pages) * page, kind: .anonymousPrivate, at: base)
        } else {
            base = try space.map(length: UInt64(pages) * page, kind: .anonymousPrivate)
        }
        let binding = try gpu.attach(addressSpace: space.id, start: base, length: UInt64(pages) * page, write: write)
        return (base, binding)
    }

    func deviceRead(_ binding: PluginInstance.Binding, _ address: UInt64) throws -> [UInt8] {
        var bytes = [UInt8](repeating: 0, count: 16)
        try bytes.withUnsafeMutableBytes { try gpu.access(binding, deviceAddress: address, write: false, buffer: $0) }
        return bytes
    }

    func deviceWrite(_ binding: PluginInstance.Binding, _ address: UInt64, _ bytes: [UInt8]) throws {
        var copy = bytes
        try copy.withUnsafeMutableBytes { try gpu.access(binding, deviceAddress: address, write: true, buffer: $0) }
    }

    func stat(_ name: String) -> UInt64 {
        guard let value = gpu.statistics().first(where: { $0.name == name })?.value else {
            preconditionFailure("the GPU plugin has no counter '\(name)'")
        }
        return value
    }

    /// Tears everything down and checks nothing leaked: every frame free,
    /// no violation recorded, nothing left in VRAM.
    func finish() -> [String] {
        var problems: [String] = []
        gpu.destroy()
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
func tag(_ index: Int, _ version: UInt32) -> [UInt8] {
    var bytes = [UInt8](repeating: 0, count: 16)
    withUnsafeBytes(of: UInt32(index).littleEndian) { bytes.replaceSubrange(0..<4, with: $0) }
    withUnsafeBytes(of: version.littleEndian) { bytes.replaceSubrange(4..<8, with: $0) }
    bytes[15] = 0xA5
    return bytes
}
