import Foundation
import Testing

/// A plugin author's way to build their own kernel-style driver outside
/// this package (README "Bring your driver"): scripts/linux-shim-sdk
/// installs the shim's headers and static library, and
/// Examples/OutOfTreeDriver/Makefile builds the driver's files and its glue
/// file with `cc` against them. The driver here is the kernel-style mirror's
/// sources copied out of the package; the plugin it makes loads, runs clean,
/// and its deliberate bug is found. A call to what the shim does not
/// provide fails at the link, naming it.
@Suite("Linux shim: a driver built out of tree")
struct OutOfTreeDriverTests {
    static var packageRoot: String {
        var path = #filePath
        for _ in 0..<3 { path = String(path[..<path.lastIndex(of: "/")!]) }
        return path
    }

    /// Installs the SDK from the build beside the tests into the sandbox, and
    /// a driver directory with the Makefile and `sources` (name, text).
    static func prepare(_ sandbox: Sandbox, sources: [(String, String)]) throws -> (sdk: String, driver: String) {
        let sdk = sandbox.path("sdk"), driver = sandbox.path("driver")
        let installed = try sandbox.tool("/bin/bash", [packageRoot + "/scripts/linux-shim-sdk", "--build-dir", buildDirectory, sdk])
        #expect(installed.status == 0, "\(installed.transcript)")
        for file in ["include/mmulab-linux-shim/linux/hmm.h", "include/mmulab-linux-shim/mmulab/linux_glue.h",
                     "include/mmulab-linux-shim/mmulab_device_plugin.h", "lib/libmmulab-linux-shim.a", "lib/pkgconfig/mmulab-linux-shim.pc"] {
            #expect(FileManager.default.fileExists(atPath: sdk + "/" + file), "the SDK has \(file)")
        }
        try FileManager.default.createDirectory(atPath: driver, withIntermediateDirectories: true)
        try FileManager.default.copyItem(atPath: packageRoot + "/Examples/OutOfTreeDriver/Makefile", toPath: driver + "/Makefile")
        for (name, text) in sources { try text.write(toFile: driver + "/" + name, atomically: true, encoding: .utf8) }
        return (sdk, driver)
    }

    static func make(_ sandbox: Sandbox, _ sdk: String, _ driver: String, plugin: String) throws -> Outcome {
        try sandbox.tool("/usr/bin/env", ["make", "-C", driver, "MMULAB_SDK=\(sdk)", "PLUGIN=\(plugin)"])
    }

    @Test func theKernelStyleMirrorBuiltWithCcLoadsRunsAndItsBugIsFound() throws {
        let sandbox = try Sandbox()
        let example = Self.packageRoot + "/Examples/KernelStyleMirror/"
        let sources = try ["kmirror.c", "kmirror.h", "glue.c"].map { ($0, try String(contentsOfFile: example + $0, encoding: .utf8)) }
        let (sdk, driver) = try Self.prepare(sandbox, sources: sources)
        let built = try Self.make(sandbox, sdk, driver, plugin: "libmmulab-plugin-outoftree.so")
        #expect(built.status == 0, "\(built.transcript)")
        #expect(built.stdout.contains("-Wl,-z,defs") && built.stdout.contains("libmmulab-linux-shim.a"), "\(built.stdout)")
        let plugin = driver + "/libmmulab-plugin-outoftree.so"

        let inspected = try sandbox.mmulab(["plugins", "inspect", plugin])
        #expect(inspected.status == 0, "\(inspected.transcript)")
        #expect(inspected.stdout.contains("kernel-mirror") && inspected.stdout.contains("create               ok"), "\(inspected.transcript)")

        let clean = try sandbox.mmulab(["run", "munmap-race", "--plugin", plugin, "--duration", "500ms", "--plugin-directory", buildDirectory])
        #expect(clean.status == 0, "\(clean.transcript)")
        #expect(clean.stdout.contains("outoftree#0"), "the run is about the out-of-tree plugin: \(clean.transcript)")

        let broken = try sandbox.mmulab([
            "run", "oom-reaper", "--plugin", plugin, "--plugin-options", "bug=mutex-in-nonblockable", "--duration", "2s",
            "--plugin-directory", buildDirectory,
        ])
        #expect(broken.status == 1, "\(broken.transcript)")
        #expect(broken.stdout.contains("context violation (sleeping lock acquire on '&mirror->mutex')"), "\(broken.transcript)")
    }

    /// The error a driver gets for what the shim does not provide: the link
    /// fails and names it (here pfn_to_page), never a plugin that loads.
    @Test func whatTheShimDoesNotProvideFailsTheLink() throws {
        let sandbox = try Sandbox()
        let driver = """
            #include <linux/mm.h>
            #include <linux/slab.h>

            struct page *lookup_device_page(unsigned long pfn) {
                void *scratch = kzalloc(64, GFP_KERNEL);
                kfree(scratch);
                return pfn_to_page(pfn);
            }
            """
        let (sdk, directory) = try Self.prepare(sandbox, sources: [("driver.c", driver)])
        let built = try Self.make(sandbox, sdk, directory, plugin: "libmmulab-plugin-missing.so")
        #expect(built.status != 0, "\(built.transcript)")
        #expect(built.stderr.contains("pfn_to_page"), "the linker names it: \(built.transcript)")
        #expect(!built.stderr.contains("kzalloc") && !built.stderr.contains("kfree"), "and nothing the shim provides: \(built.transcript)")
        #expect(!FileManager.default.fileExists(atPath: directory + "/libmmulab-plugin-missing.so"))
    }
}
