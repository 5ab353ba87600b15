import PluginHost
@_exported import PluginTestSupport
import VirtualMemory

/// The RDMA plugin, as built next to the test bundle.
let rdmaPluginPath = bundledPluginPath("mmulab-plugin-rdma")

/// What an implicit region covers: `ibv_reg_mr(pd, NULL, SIZE_MAX, ...)`.
let wholeAddressSpace: UInt64 = 1 << 47

/// The RDMA plugin on its own machine (see `PluginFixture`).
final class RDMAFixture: PluginFixture, @unchecked Sendable {
    var nic: PluginInstance { instance }

    init(frames: Int = 1024, nodes: Int = 1, swapSlots: Int = 4096, faults: MemoryFaultInjection = [], options: String = "") throws {
        try super.init(pluginPath: rdmaPluginPath, frames: frames, nodes: nodes, swapSlots: swapSlots, faults: faults, options: options)
    }

    /// An implicit on-demand-paging region over the whole address space.
    func registerImplicit() throws -> PluginInstance.Binding {
        try nic.attach(addressSpace: space.id, start: 0, length: wholeAddressSpace, deviceAddress: 0, write: true)
    }
}
