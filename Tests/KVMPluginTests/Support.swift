import PluginHost
@_exported import PluginTestSupport
import VirtualMemory

/// The KVM plugin, as built next to the test bundle.
let kvmPluginPath = bundledPluginPath("mmulab-plugin-kvm")

/// Guest-physical base of the fixtures' first memslot.
let guestBase: UInt64 = 0x1_0000_0000

/// The plugin's `control` commands (Plugins/KVM/DirtyLog.swift).
enum KVMCommand: UInt32 {
    case enableDirtyLog = 1, getDirtyLog = 2, disableDirtyLog = 3, verify = 4
}

/// The KVM plugin on its own machine (see `PluginFixture`): one VM on the
/// fixture's address space.
final class KVMFixture: PluginFixture, @unchecked Sendable {
    init(frames: Int = 1024, nodes: Int = 1, swapSlots: Int = 4096, faults: MemoryFaultInjection = [], options: String = "") throws {
        try super.init(pluginPath: kvmPluginPath, frames: frames, nodes: nodes, swapSlots: swapSlots, faults: faults, options: options)
    }

    /// Maps `pages` anonymous pages and makes them a memslot at `gpa`.
    func memslot(pages: Int, at gpa: UInt64 = guestBase, write: Bool = true, mergeable: Bool = false) throws -> (hva: UInt64, slot: PluginInstance.Binding) {
        let hva = try space.map(length: UInt64(pages) * page, kind: .anonymousPrivate)
        if mergeable { try space.adviseMergeable(start: hva, length: UInt64(pages) * page) }
        let slot = try instance.attach(addressSpace: space.id, start: hva, length: UInt64(pages) * page, deviceAddress: gpa, write: write)
        return (hva, slot)
    }

    func guestRead(_ slot: PluginInstance.Binding, _ gpa: UInt64) throws -> [UInt8] { try deviceRead(slot, gpa) }
    func guestWrite(_ slot: PluginInstance.Binding, _ gpa: UInt64, _ bytes: [UInt8]) throws { try deviceWrite(slot, gpa, bytes) }

    func command(_ slot: PluginInstance.Binding, _ command: KVMCommand, _ argument: inout [UInt64]) throws {
        try argument.withUnsafeMutableBytes { try instance.control(slot, command: command.rawValue, argument: $0) }
    }

    func command(_ slot: PluginInstance.Binding, _ command: KVMCommand) throws {
        var none: [UInt64] = []
        try self.command(slot, command, &none)
    }

    /// The dirty log of a slot of `pages` pages, as page indices.
    func dirtyPages(_ slot: PluginInstance.Binding, pages: Int) throws -> Set<Int> {
        var bitmap = [UInt64](repeating: 0, count: (pages + 63) / 64)
        try command(slot, .getDirtyLog, &bitmap)
        return Set((0..<pages).filter { bitmap[$0 / 64] & (1 << UInt64($0 % 64)) != 0 })
    }
}
