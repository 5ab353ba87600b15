import Testing

#if canImport(Glibc)
import Glibc
#endif

/// docs/ARCHITECTURE.md: every lock, wait and sleep in the core goes through the
/// synchronisation layer, so context checks see them all and a controlled
/// scheduler owns them all (issue 17: nothing escapes the seam). These tests
/// fail if any module other than LabSync, or any bundled or example plugin,
/// reaches for a raw lock, condition, sleep, thread, yield or clock.
@Suite("Layering")
struct LayeringTests {
    static let forbidden = [
        "pthread_mutex", "pthread_cond", "pthread_create", "pthread_join", "pthread_self", "pthread_rwlock", "pthread_spin",
        "sched_yield", "thrd_create", "std::thread",
        "NSLock", "NSCondition", "NSRecursiveLock", "DispatchSemaphore", "DispatchQueue",
        "Mutex<", "Mutex(", "usleep(", "nanosleep(", "Thread.sleep", "os_unfair_lock",
    ]

    /// Clocks: the lab reads only `SyncDomain.now()` (virtual under a
    /// controlled scheduler), plugins only the host's `now_ns`.
    static let clocks = [
        "ContinuousClock", "SuspendingClock", "clock_gettime", "gettimeofday", "Date()", "DispatchTime", "time(NULL)", "time(nil)",
        "CLOCK_MONOTONIC", "CLOCK_REALTIME", "__rdtsc", "timespec_get",
    ]

    /// Where a raw primitive or clock is allowed: the layer itself and its C
    /// shims, the CLI's campaign, which times child processes (outside any
    /// run) in real time, the bug database, which dates campaigns and
    /// sightings by the wall clock, and the kernel-diff harness's runner, a
    /// process of its own that drives the real kernel, not the lab, and the
    /// shrinker's candidate runner, which times its child processes.
    static let exempt = [
        "/Sources/LabSync/", "/Sources/CLabSyncShims/", "/Sources/mmulab/Campaign/", "/Sources/mmulab/CampaignCommand.swift",
        "/Sources/mmulab/CampaignCollectCommand.swift", "/Sources/BugDatabase/", "/Sources/KernelRunner/",
        "/Sources/mmulab/Shrink/CandidateProcess.swift",
    ]

    static var packageRoot: String {
        // .../Tests/LabSyncTests/LayeringTests.swift -> ...
        var path = #filePath
        for _ in 0..<3 { path = String(path[..<path.lastIndex(of: "/")!]) }
        return path
    }

    static var sourcesRoot: String { packageRoot + "/Sources" }

    /// Every Swift, C and header file of the lab, the bundled plugins and the examples.
    static func everyFile() throws -> [String] {
        try ["/Sources", "/Plugins", "/Examples"].flatMap { try files(under: packageRoot + $0, suffixes: [".swift", ".c", ".h"]) }
    }

    @Test func onlyLabSyncTouchesRawSynchronisationThreadsOrClocks() throws {
        let files = try Self.everyFile()
        #expect(files.filter { $0.contains("/Plugins/") }.count > 10, "found the plugins under \(Self.packageRoot)")
        #expect(files.filter { $0.contains("/Examples/") }.count >= 3, "found the examples under \(Self.packageRoot)")
        var offenders: [String] = []
        for file in files where !Self.exempt.contains(where: { file.contains($0) }) {
            let code = Self.withoutComments(try read(file))
            for token in Self.forbidden + Self.clocks where code.contains(token) {
                offenders.append("\(file): \(token)")
            }
            if Self.callsBareSleep(code) { offenders.append("\(file): sleep(") }
        }
        #expect(offenders.isEmpty, "raw synchronisation, threads or clocks outside LabSync: \(offenders)")
    }

    /// The check itself: it sees a forbidden call in code and not in a comment.
    @Test func theCheckSeesCodeNotComments() {
        #expect(Self.withoutComments("a // pthread_create\nb /* sched_yield */ c").contains("pthread_create") == false)
        #expect(Self.withoutComments("x = pthread_self(); // why").contains("pthread_self"))
        #expect(Self.callsBareSleep("    sleep(1);"))
        #expect(Self.callsBareSleep("host->sleep_ns(ctx, 5); host.sleep(nanoseconds: 1); domain.sleep(for: x)") == false)
        #expect(Self.callsBareSleep("public func sleep(nanoseconds: UInt64)") == false)
    }

    @Test func pluginsSeeOnlyTheHeaderOrThePluginKit() throws {
        for root in ["/Plugins", "/Examples"] {
            for file in try Self.files(under: Self.packageRoot + root, suffixes: [".swift"]) {
                let text = try read(file)
                for module in ["LabSync", "MMUNotifier", "VirtualMemory", "PluginHost", "ReclaimLab"] {
                    #expect(!text.contains("import \(module)"), "\(file) imports \(module)")
                }
            }
        }
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

    /// The notifier-only storm checks the notifier contract with devices of
    /// its own: no primary MMU model, no plugins.
    @Test func theNotifierStormKnowsOnlyTheNotifierCore() throws {
        let files = try swiftFiles(under: Self.sourcesRoot + "/NotifierStormLab")
        #expect(files.count >= 3, "found the storm under \(Self.sourcesRoot)")
        for file in files {
            let text = try read(file)
            for module in ["VirtualMemory", "PluginHost", "ReclaimLab", "DevicePluginKit", "CDevicePluginABI"] {
                #expect(!text.contains("import \(module)"), "\(file) imports \(module)")
            }
        }
    }

    /// Whoever needs a C module's symbols imports it: neither the lab's
    /// modules nor the plugins re-export one to their users.
    @Test func nothingReExportsAModule() throws {
        for file in try Self.everyFile() where file.hasSuffix(".swift") {
            #expect(!Self.withoutComments(try read(file)).contains("@_exported"), "\(file) re-exports a module")
        }
    }

    @Test func onlyPluginHostLoadsSharedObjects() throws {
        for file in try Self.everyFile() where !file.contains("/Sources/PluginHost/") {
            #expect(!Self.withoutComments(try read(file)).contains("dlopen("), "\(file) calls dlopen")
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

    /// The text with `//` and `/* */` comments blanked (documentation may
    /// name what the code must not call).
    static func withoutComments(_ text: String) -> String {
        var out = ""
        var index = text.startIndex
        var inBlock = false
        var inLine = false
        while index < text.endIndex {
            let next = text.index(after: index)
            let pair = next < text.endIndex ? String(text[index...next]) : ""
            if inBlock {
                if pair == "*/" {
                    inBlock = false
                    index = text.index(after: next)
                    continue
                }
            } else if inLine {
                if text[index] == "\n" {
                    inLine = false
                    out.append("\n")
                }
            } else if pair == "//" {
                inLine = true
            } else if pair == "/*" {
                inBlock = true
            } else {
                out.append(text[index])
            }
            index = next
        }
        return out
    }

    /// A call of the C library's `sleep(`, not a method or a longer name.
    static func callsBareSleep(_ code: String) -> Bool {
        let bytes = Array(code.utf8)
        let word = Array("sleep(".utf8)
        guard bytes.count >= word.count else { return false }
        for start in 0...(bytes.count - word.count) where Array(bytes[start..<start + word.count]) == word {
            let before = start > 0 ? bytes[start - 1] : UInt8(ascii: " ")
            let partOfName = (before >= UInt8(ascii: "a") && before <= UInt8(ascii: "z")) || (before >= UInt8(ascii: "A") && before <= UInt8(ascii: "Z"))
                || (before >= UInt8(ascii: "0") && before <= UInt8(ascii: "9")) || before == UInt8(ascii: "_") || before == UInt8(ascii: ".")
                || before == UInt8(ascii: ">")
            let declaration = start >= 5 && Array(bytes[start - 5..<start]) == Array("func ".utf8)
            if !partOfName && !declaration { return true }
        }
        return false
    }

    private func swiftFiles(under root: String) throws -> [String] { try Self.files(under: root, suffixes: [".swift"]) }

    static func files(under root: String, suffixes: [String]) throws -> [String] {
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
                result += try files(under: path, suffixes: suffixes)
            } else if suffixes.contains(where: { name.hasSuffix($0) }) {
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
