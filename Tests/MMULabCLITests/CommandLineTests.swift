import Foundation
import Testing

/// The command line as a new user meets it: --version, real messages for
/// negative numbers, durations with units, `scenarios show` and a
/// `scenarios check` that accepts exactly what `run` accepts.
@Suite("mmulab command line")
struct CommandLineTests {
    @Test("--version prints the version and the plugin ABI")
    func version() throws {
        let outcome = try Sandbox().mmulab(["--version"])
        #expect(outcome.status == 0 && outcome.stdout.hasPrefix("mmulab ") && outcome.stdout.contains("plugin ABI 1."), "\(outcome.transcript)")
    }

    @Test(
        "negative numbers get a message about what is allowed, not 'missing value'",
        arguments: [
            (["run", "munmap-race", "--seed", "-1"], "seeds are 0 or more"),
            (["run", "munmap-race", "--duration", "-1"], "more than 0"),
            (["run", "munmap-race", "--duration", "10 parsecs"], "not a duration"),
            (["demo", "--seed", "-7"], "seeds are 0 or more"),
            (["campaign", "munmap-race", "--seeds", "-1..3"], "seeds are 0 or more"),
            (["campaign", "munmap-race", "--seeds", "1", "--jobs", "-2"], "not negative"),
            (["notifier-storm", "--address-spaces", "-3"], "not negative"),
        ])
    func negativeNumbers(arguments: [String], message: String) throws {
        let outcome = try Sandbox().mmulab(arguments)
        expectBadInput(outcome, mentions: [message])
        #expect(!outcome.stderr.contains("Missing value"), "\(outcome.transcript)")
    }

    @Test("--duration takes 500ms, 2s and plain seconds, and the scenario file takes the same spelling")
    func durations() throws {
        let sandbox = try Sandbox()
        for duration in ["500ms", "0.5"] {
            let report = sandbox.path("d-\(duration).json")
            let outcome = try sandbox.mmulab(["run", "munmap-race", "--duration", duration, "--plugin-directory", buildDirectory, "--json", report])
            #expect(outcome.status == 0, "\(outcome.transcript)")
            let elapsed = try #require(try jsonObject(at: report)["elapsed_seconds"] as? Double)
            #expect(elapsed >= 0.5 && elapsed < 5, "\(duration): \(elapsed) s")
            #expect(outcome.stdout.contains("--duration 500ms"), "the replay says it the short way: \(outcome.transcript)")
        }
        let file = try sandbox.write("short.yaml", """
            name: short
            length: 300ms
            machine: { frames: 128, swap-slots: 128 }
            spaces: [ { name: app, mappings: [ { name: heap, pages: 16 } ] } ]
            workloads: [ { name: cpu, actor: cpu, space: app, mapping: heap } ]
            """)
        let report = sandbox.path("short.json")
        let outcome = try sandbox.mmulab(["run", file, "--json", report])
        #expect(outcome.status == 0, "\(outcome.transcript)")
        let elapsed = try #require(try jsonObject(at: report)["elapsed_seconds"] as? Double)
        #expect(elapsed >= 0.3 && elapsed < 5, "\(elapsed) s")
    }

    @Test("scenarios show prints a built-in scenario's YAML, which scenarios check reads from standard input")
    func showThenCheck() throws {
        let sandbox = try Sandbox()
        let shown = try sandbox.mmulab(["scenarios", "show", "munmap-race"])
        #expect(shown.status == 0 && shown.stdout.hasPrefix("name: munmap-race"), "\(shown.transcript)")
        let file = try sandbox.write("copy.yaml", shown.stdout)
        let checked = try sandbox.mmulab(["scenarios", "check", file, "munmap-race", "--plugin-directory", buildDirectory])
        #expect(checked.status == 0 && checked.stdout.contains("ok        munmap-race:") && checked.stdout.contains("ok        \(file):"), "\(checked.transcript)")

        let process = Process()
        process.executableURL = URL(fileURLWithPath: buildDirectory + "/mmulab")
        process.arguments = ["scenarios", "check", "-", "--plugin-directory", buildDirectory]
        let input = Pipe()
        let output = Pipe()
        process.standardInput = input
        process.standardOutput = output
        process.standardError = output
        try process.run()
        input.fileHandleForWriting.write(Data(shown.stdout.utf8))
        try input.fileHandleForWriting.close()
        process.waitUntilExit()
        let text = String(decoding: output.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        #expect(process.terminationStatus == 0 && text.contains("ok        <stdin>: 'munmap-race'"), "\(text)")

        let unknown = try sandbox.mmulab(["scenarios", "show", "no-such"])
        expectBadInput(unknown, mentions: ["no-such", "reclaim-storm"])
    }

    static let head = """
        name: t
        length: 300ms
        machine: { frames: 256, swap-slots: 256 }
        spaces: [ { name: app, mappings: [ { name: a, pages: 16 }, { name: b, pages: 16 } ] } ]

        """

    @Test(
        "scenarios check refuses what run refuses, at its file:line: a plugin that does not exist, options it refuses, a binding it rejects",
        arguments: [
            ("plugins: [ { plugin: /no/such/libplugin.so, bindings: [ { space: app, mapping: a } ] } ]\n", 5, "/no/such/libplugin.so"),
            ("plugins:\n  - plugin: gpu\n    options: \"tlb=lots\"\n    bindings: [ { space: app, mapping: a } ]\n", 7, "tlb"),
            ("plugins:\n  - plugin: kvm\n    bindings: [ { space: app, mapping: a, device-address: 0 }, { space: app, mapping: b, device-address: 0x8000 } ]\n",
                7, "overlaps"),
            ("plugins:\n  - plugin: gpu\n    bindings:\n      - { space: app, mapping: a }\n      - { space: app, mapping: b, device-address: 0x10000 }\n", 9,
                "must equal the CPU address"),
        ] as [(String, Int, String)])
    func checkRefusesWhatRunRefuses(plugins: String, line: Int, message: String) throws {
        let sandbox = try Sandbox()
        let file = try sandbox.write("t.yaml", Self.head + plugins + "workloads: [ { name: cpu, actor: cpu, space: app, mapping: a } ]\n")
        let checked = try sandbox.mmulab(["scenarios", "check", file, "--plugin-directory", buildDirectory])
        expectBadInput(checked, mentions: ["\(file):\(line):", message])
        let run = try sandbox.mmulab(["run", file, "--plugin-directory", buildDirectory])
        expectBadInput(run, mentions: ["\(file):\(line):", message])
        #expect(!run.stdout.contains("scenario "), "it ran: \(run.transcript)")
    }

    @Test("scripts/demo's release build makes the example plugins the README runs with --plugin")
    func theDemoBuildsTheExamplePlugins() throws {
        var root = #filePath
        for _ in 0..<3 { root = String(root[..<root.lastIndex(of: "/")!]) }
        let script = try String(contentsOfFile: root + "/scripts/demo", encoding: .utf8)
        for product in ["mmulab-plugin-gpu", "mmulab-plugin-rdma", "mmulab-plugin-kvm", "mmulab-plugin-mirror-c", "mmulab-plugin-mirror-swift",
            "mmulab-plugin-mirror-broken", "mmulab-plugin-kernel-mirror"]
        {
            #expect(script.contains(product), "scripts/demo does not build \(product)")
        }
    }
}
