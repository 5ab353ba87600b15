import LabSync
import PluginHost
import TestSupport
import VirtualMemory

/// The directory the package's shared objects are built into (next to the test bundle).
let buildDirectory = PluginDiscovery.executableDirectory!

func fixture(_ name: String) -> String { "\(buildDirectory)/libmmulab-fixture-\(name).so" }
let mirrorC = "\(buildDirectory)/libmmulab-plugin-mirror-c.so"
let mirrorSwift = "\(buildDirectory)/libmmulab-plugin-mirror-swift.so"
let kernelMirror = "\(buildDirectory)/libmmulab-plugin-kernel-mirror.so"

/// Tests/Fixtures/Plugins, found from this file.
let fixturesDirectory: String = {
    var path = #filePath
    for _ in 0..<2 { path = String(path[..<path.lastIndex(of: "/")!]) }
    return path + "/Fixtures/Plugins"
}()

func load(_ path: String) throws -> LoadedPlugin {
    switch PluginLoader.load(path) {
    case .success(let plugin): return plugin
    case .failure(let error): throw error
    }
}

func makeMachine(frames: Int = 512, nodes: Int = 2) -> Machine {
    Machine(.init(memory: .init(frames: frames, nodes: nodes, payloadSize: 16), swapSlots: 4096))
}

/// A 16-byte tag the device writes: (binding page, version).
func tag(page: Int, version: UInt32) -> [UInt8] {
    var bytes = [UInt8](repeating: 0, count: 16)
    withUnsafeBytes(of: UInt32(page).littleEndian) { bytes.replaceSubrange(0..<4, with: $0) }
    withUnsafeBytes(of: version.littleEndian) { bytes.replaceSubrange(4..<8, with: $0) }
    return bytes
}
