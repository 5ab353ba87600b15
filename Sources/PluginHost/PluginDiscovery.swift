#if canImport(Glibc)
import Glibc
#endif

/// Where plugins come from, in this order: explicit paths, the directories
/// in `MMULAB_PLUGIN_PATH` (colon-separated; ignored when the process runs
/// setuid or setgid, so an environment cannot inject code into a privileged
/// process), and the bundled plugins beside the executable. Directories
/// contribute the files named `libmmulab-plugin-*.so`. The result is
/// sorted and de-duplicated by real path.
public struct PluginDiscovery: Sendable {
    public static let environmentVariable = "MMULAB_PLUGIN_PATH"
    public static let filePrefix = "libmmulab-plugin-"
    public static let fileSuffix = ".so"

    public var explicitPaths: [String]
    public var searchDirectories: [String]
    public var bundledDirectory: String?

    public init(explicitPaths: [String] = [], searchDirectories: [String]? = nil, bundledDirectory: String? = Self.executableDirectory) {
        self.explicitPaths = explicitPaths
        self.searchDirectories = searchDirectories ?? Self.environmentDirectories()
        self.bundledDirectory = bundledDirectory
    }

    /// The directories named by `MMULAB_PLUGIN_PATH`, unless the process is privileged.
    public static func environmentDirectories() -> [String] {
        guard getuid() == geteuid(), getgid() == getegid() else { return [] }
        guard let raw = getenv(environmentVariable) else { return [] }
        return String(cString: raw).split(separator: ":").map(String.init).filter { !$0.isEmpty }
    }

    /// The directory of the running executable.
    public static var executableDirectory: String? {
        var buffer = [CChar](repeating: 0, count: Int(PATH_MAX) + 1)
        let length = readlink("/proc/self/exe", &buffer, Int(PATH_MAX))
        guard length > 0 else { return nil }
        let path = String(decoding: buffer[0..<length].map { UInt8(bitPattern: $0) }, as: UTF8.self)
        guard let slash = path.lastIndex(of: "/") else { return nil }
        return String(path[..<slash])
    }

    /// Every candidate plugin file, sorted and unique by real path. Explicit
    /// paths are kept even when they do not exist, so loading reports them.
    public func candidates() -> [String] {
        var seen = Set<String>()
        var result: [String] = []
        func add(_ path: String) {
            let key = Self.realPath(path) ?? path
            if seen.insert(key).inserted { result.append(key) }
        }
        for path in explicitPaths { add(path) }
        for directory in searchDirectories + (bundledDirectory.map { [$0] } ?? []) {
            for file in Self.pluginFiles(in: directory) { add(file) }
        }
        return result.sorted()
    }

    static func realPath(_ path: String) -> String? {
        guard let resolved = realpath(path, nil) else { return nil }
        defer { free(resolved) }
        return String(cString: resolved)
    }

    static func pluginFiles(in directory: String) -> [String] {
        guard let dir = opendir(directory) else { return [] }
        defer { closedir(dir) }
        var files: [String] = []
        while let entry = readdir(dir) {
            let name = withUnsafeBytes(of: entry.pointee.d_name) { raw in
                String(decoding: raw.prefix { $0 != 0 }, as: UTF8.self)
            }
            if name.hasPrefix(filePrefix) && name.hasSuffix(fileSuffix) { files.append(directory + "/" + name) }
        }
        return files
    }
}
