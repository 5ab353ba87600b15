import PluginHost

/// What `mmulab --version` prints: the tool's version and the plugin ABI
/// it hosts (a plugin built against the same major and at most this minor
/// loads).
enum Version {
    static let tool = "0.16.0"
    static var text: String { "mmulab \(tool) (device plugin ABI 1.\(PluginLoader.hostMinor))" }
}
