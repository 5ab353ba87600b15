import Testing

#if canImport(Glibc)
import Glibc
#endif

/// DESIGN.md: every lock, wait and sleep in the core goes through the
/// synchronisation layer, so context checks see them all and a controlled
/// scheduler can later own them all. This test fails if any other module
/// reaches for a raw lock, condition, sleep or thread.
@Suite("Layering")
struct LayeringTests {
    static let forbidden = [
        "pthread_mutex", "pthread_cond", "pthread_create", "pthread_rwlock", "pthread_spin",
        "NSLock", "NSCondition", "NSRecursiveLock", "DispatchSemaphore", "DispatchQueue",
        "Mutex<", "Mutex(", "usleep(", "nanosleep(", "Thread.sleep", "os_unfair_lock",
    ]

    static var sourcesRoot: String {
        // .../Tests/LabSyncTests/LayeringTests.swift -> .../Sources
        var path = #filePath
        for _ in 0..<3 { path = String(path[..<path.lastIndex(of: "/")!]) }
        return path + "/Sources"
    }

    @Test func onlyLabSyncTouchesRawSynchronisation() throws {
        let files = try swiftFiles(under: Self.sourcesRoot)
        #expect(files.count > 10, "found the sources at \(Self.sourcesRoot)")
        var offenders: [String] = []
        for file in files where !file.contains("/Sources/LabSync/") {
            let text = try read(file)
            for token in Self.forbidden where text.contains(token) {
                offenders.append("\(file): \(token)")
            }
        }
        #expect(offenders.isEmpty, "raw synchronisation outside LabSync: \(offenders)")
    }

    @Test func mmuNotifierKnowsNothingOfHigherLayers() throws {
        let files = try swiftFiles(under: Self.sourcesRoot + "/MMUNotifier")
        for file in files {
            let text = try read(file)
            for module in ["VirtualMemory", "PluginHost", "ReclaimLab", "DevicePluginKit", "CDevicePluginABI"] {
                #expect(!text.contains("import \(module)"), "\(file) imports \(module)")
            }
        }
    }

    @Test func virtualMemoryKnowsNothingOfPluginsOrScenarios() throws {
        let files = try swiftFiles(under: Self.sourcesRoot + "/VirtualMemory")
        #expect(files.count > 5)
        for file in files {
            let text = try read(file)
            for module in ["PluginHost", "ReclaimLab", "DevicePluginKit", "CDevicePluginABI"] {
                #expect(!text.contains("import \(module)"), "\(file) imports \(module)")
            }
        }
    }

    @Test func onlyPluginHostLoadsSharedObjects() throws {
        for file in try swiftFiles(under: Self.sourcesRoot) where !file.contains("/Sources/PluginHost/") {
            #expect(!(try read(file)).contains("dlopen("), "\(file) calls dlopen")
        }
    }

    @Test func thePluginKitSeesOnlyTheCHeader() throws {
        let files = try swiftFiles(under: Self.sourcesRoot + "/DevicePluginKit")
        #expect(!files.isEmpty)
        for file in files {
            let text = try read(file)
            for module in ["LabSync", "MMUNotifier", "VirtualMemory", "PluginHost"] {
                #expect(!text.contains("import \(module)"), "\(file) imports \(module)")
            }
        }
    }

    private func swiftFiles(under root: String) throws -> [String] {
        guard let dir = opendir(root) else { return [] }
        defer { closedir(dir) }
        var result: [String] = []
        while let entry = readdir(dir) {
            let name = withUnsafeBytes(of: entry.pointee.d_name) { raw in
                String(decoding: raw.prefix { $0 != 0 }, as: UTF8.self)
            }
            if name == "." || name == ".." { continue }
            let path = root + "/" + name
            if entry.pointee.d_type == UInt8(DT_DIR) {
                result += try swiftFiles(under: path)
            } else if name.hasSuffix(".swift") {
                result.append(path)
            }
        }
        return result
    }

    private func read(_ path: String) throws -> String {
        guard let file = fopen(path, "r") else { throw ReadError(path: path) }
        defer { fclose(file) }
        var bytes: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 65_536)
        while true {
            let n = fread(&buffer, 1, buffer.count, file)
            if n == 0 { break }
            bytes += buffer[0..<n]
        }
        return String(decoding: bytes, as: UTF8.self)
    }

    struct ReadError: Error { let path: String }
}
