import PluginHost
@_exported import PluginTestSupport

/// The GPU plugin, as built next to the test bundle.
let gpuPluginPath = bundledPluginPath("mmulab-plugin-gpu")

/// The GPU plugin on its own machine (see `PluginFixture`).
final class GPUFixture: PluginFixture, @unchecked Sendable {
    var gpu: PluginInstance { instance }

    init(frames: Int = 2048, swapSlots: Int = 8192, options: String = "") throws {
        try super.init(pluginPath: gpuPluginPath, frames: frames, swapSlots: swapSlots, options: options)
    }
}
