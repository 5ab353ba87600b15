import Foundation
import Testing

/// The debug build directory: where `swift build` put `mmulab`, the bundled
/// plugins and the fixture plugins, beside this test bundle.
let buildDirectory: String = {
    let candidates = [
        Bundle.main.bundleURL.path,
        Bundle.main.bundleURL.deletingLastPathComponent().path,
        URL(fileURLWithPath: "/proc/self/exe").resolvingSymlinksInPath().deletingLastPathComponent().path,
    ]
    return candidates.first { FileManager.default.isExecutableFile(atPath: $0 + "/mmulab") } ?? candidates[0]
}()

/// What a finished `mmulab` process left.
struct Outcome {
    let status: Int32
    let stdout: String
    let stderr: String

    /// For failure messages: the status and both streams.
    var transcript: String { "exit status \(status)\n--- stdout\n\(stdout)\n--- stderr\n\(stderr)" }
}

/// A started `mmulab` process, its output going to files.
struct Started {
    let process: Process
    let stdout: String
    let stderr: String
}

/// A temporary directory of one test's own, removed when the value goes,
/// from which the test runs the built `mmulab` executable.
final class Sandbox {
    let directory: String

    init() throws {
        try #require(
            FileManager.default.isExecutableFile(atPath: buildDirectory + "/mmulab"),
            "no mmulab beside the tests (looked in \(buildDirectory)): run `swift build` first")
        directory = FileManager.default.temporaryDirectory.appendingPathComponent("mmulab-cli-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
    }

    deinit { try? FileManager.default.removeItem(atPath: directory) }

    /// A path in the sandbox.
    func path(_ name: String) -> String { directory + "/" + name }

    /// Writes `text` to a file in the sandbox and returns its path.
    func write(_ name: String, _ text: String) throws -> String {
        try text.write(toFile: path(name), atomically: true, encoding: .utf8)
        return path(name)
    }

    /// Starts `mmulab arguments...` (in the sandbox) with stdout and stderr going to files.
    func start(_ arguments: [String], environment extra: [String: String] = [:]) throws -> Started {
        try start(executable: buildDirectory + "/mmulab", arguments, environment: extra)
    }

    /// Runs another program (`executable`, an absolute path) to its end, as `mmulab` is run.
    func tool(_ executable: String, _ arguments: [String], environment: [String: String] = [:], limit: Double = 120) throws -> Outcome {
        finish(try start(executable: executable, arguments, environment: environment), limit: limit)
    }

    /// Starts `executable arguments...` in the sandbox, stdin /dev/null, stdout and stderr to files.
    func start(executable: String, _ arguments: [String], environment extra: [String: String] = [:]) throws -> Started {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: executable)
        process.arguments = arguments
        process.environment = ProcessInfo.processInfo.environment.merging(extra) { $1 }
        process.currentDirectoryURL = URL(fileURLWithPath: directory)
        let name = UUID().uuidString
        let started = Started(process: process, stdout: path("\(name).stdout"), stderr: path("\(name).stderr"))
        for file in [started.stdout, started.stderr] {
            guard FileManager.default.createFile(atPath: file, contents: nil) else { throw CocoaError(.fileWriteUnknown) }
        }
        process.standardInput = FileHandle.nullDevice
        process.standardOutput = FileHandle(forWritingAtPath: started.stdout)
        process.standardError = FileHandle(forWritingAtPath: started.stderr)
        try process.run()
        return started
    }

    /// Runs `mmulab arguments...` to its end.
    func mmulab(_ arguments: [String], environment: [String: String] = [:], limit: Double = 60) throws -> Outcome {
        finish(try start(arguments, environment: environment), limit: limit)
    }

    /// Waits for a started process (killing it, and failing the test, past
    /// `limit` seconds) and collects what it printed.
    func finish(_ started: Started, limit: Double = 60) -> Outcome {
        let deadline = Date().addingTimeInterval(limit)
        while started.process.isRunning && Date() < deadline { usleep(10_000) }
        if started.process.isRunning {
            kill(started.process.processIdentifier, SIGKILL)
            Issue.record("\(started.process.executableURL?.lastPathComponent ?? "?") \(started.process.arguments ?? []) did not end within \(limit) s")
        }
        started.process.waitUntilExit()
        let read = { (path: String) in (try? String(contentsOfFile: path, encoding: .utf8)) ?? "" }
        return Outcome(status: started.process.terminationStatus, stdout: read(started.stdout), stderr: read(started.stderr))
    }
}

/// Expects exit status 2 and that stderr says each of `mentions`.
func expectBadInput(_ outcome: Outcome, mentions: [String], sourceLocation: SourceLocation = #_sourceLocation) {
    #expect(outcome.status == 2, "\(outcome.transcript)", sourceLocation: sourceLocation)
    for text in mentions {
        #expect(outcome.stderr.contains(text), "stderr should mention '\(text)'\n\(outcome.transcript)", sourceLocation: sourceLocation)
    }
}

/// The JSON object in the file at `path`.
func jsonObject(at path: String, sourceLocation: SourceLocation = #_sourceLocation) throws -> [String: Any] {
    let data = try #require(FileManager.default.contents(atPath: path), "no file at \(path)", sourceLocation: sourceLocation)
    return try #require(try JSONSerialization.jsonObject(with: data) as? [String: Any], "not a JSON object", sourceLocation: sourceLocation)
}
