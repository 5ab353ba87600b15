import Foundation
import PluginHost
import Testing

/// What the Linux shim does not provide is missing at link time, never a
/// stand-in that runs: a driver calling page_address (declared in
/// <linux/mm.h>, not provided) fails to link against the shim's runtime
/// with -z defs (as the bundled shim plugins are linked), naming it; the
/// same driver without that call links.
@Suite("Linux shim: what is not provided")
struct LinuxShimLinkTests {
    static var packageRoot: String {
        var path = #filePath
        for _ in 0..<3 { path = String(path[..<path.lastIndex(of: "/")!]) }
        return path
    }

    /// The shim runtime's objects, as the build made them for the bundled plugins.
    static func runtimeObjects() throws -> [String] {
        let directory = PluginDiscovery.executableDirectory! + "/CLinuxShim.build"
        let objects = try FileManager.default.contentsOfDirectory(atPath: directory).filter { $0.hasSuffix(".o") }
        return objects.sorted().map { "\(directory)/\($0)" }
    }

    /// Compiles `driver` and links it with the runtime into a shared object; the status and what the tools said.
    static func link(_ driver: String) throws -> (status: Int32, output: String) {
        let scratch = FileManager.default.temporaryDirectory.appendingPathComponent("linux-shim-link-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: scratch, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: scratch) }
        let source = scratch.appendingPathComponent("driver.c")
        try driver.write(to: source, atomically: true, encoding: .utf8)
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = [
            "clang", "-shared", "-fPIC", "-I", packageRoot + "/Sources/CLinuxShim/include", "-I",
            packageRoot + "/Sources/CDevicePluginABI/include", source.path,
        ] + (try runtimeObjects()) + ["-Wl,-z,defs", "-o", scratch.appendingPathComponent("driver.so").path]
        let pipe = Pipe()
        process.standardOutput = pipe
        process.standardError = pipe
        try process.run()
        let output = String(decoding: pipe.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        process.waitUntilExit()
        return (process.terminationStatus, output)
    }

    static func driver(callingPageAddress: Bool) -> String {
        """
        #include <linux/mm.h>
        #include <linux/slab.h>

        void *driver_function(struct page *page) {
            void *buffer = kmalloc(64, GFP_KERNEL);
            kfree(buffer);
            return \(callingPageAddress ? "page_address(page)" : "page");
        }
        """
    }

    @Test func aDriverCallingWhatIsNotProvidedFailsToLinkNamingIt() throws {
        #expect(try !Self.runtimeObjects().isEmpty, "the shim's runtime objects are built beside the tests")
        let linked = try Self.link(Self.driver(callingPageAddress: false))
        #expect(linked.status == 0, "without page_address it links: \(linked.output)")
        let refused = try Self.link(Self.driver(callingPageAddress: true))
        #expect(refused.status != 0, "page_address is not provided")
        #expect(refused.output.contains("page_address"), "the linker names it: \(refused.output)")
        #expect(!refused.output.contains("kmalloc"), "and nothing the shim provides: \(refused.output)")
    }
}
