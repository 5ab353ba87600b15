import Foundation
import Testing

/// A real single-node Slurm cluster for one test, started with
/// `scripts/slurm-cluster start` in a directory of its own and stopped when
/// the value goes.
///
/// When it cannot start (no root, no slurm-wlm), `start()` says why: with
/// `MMULAB_REQUIRE_SLURM=1` (CI sets it, through `.ci/run`) the test fails
/// with that reason; without it the test records nothing and returns nil,
/// after printing the reason, so a developer's `swift test` without root
/// is not a failure but is never silent about it.
final class SlurmCluster {
    let directory: String
    let script: String

    /// `SLURM_CONF` for the commands that use this cluster.
    var environment: [String: String] { ["SLURM_CONF": directory + "/slurm.conf", "PATH": Self.path] }

    /// PATH with /usr/sbin (slurmd, munged) for the script.
    static var path: String { (ProcessInfo.processInfo.environment["PATH"] ?? "/usr/bin:/bin") + ":/usr/sbin" }

    /// The repository's root, from this file's path (Tests/MMULabCLITests/).
    static let repositoryRoot = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent().path

    private init(directory: String, script: String) {
        self.directory = directory
        self.script = script
    }

    static var required: Bool { ProcessInfo.processInfo.environment["MMULAB_REQUIRE_SLURM"] == "1" }

    /// Starts a cluster, or (see the type's comment) fails or returns nil.
    static func start(sourceLocation: SourceLocation = #_sourceLocation) throws -> SlurmCluster? {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("mmulab-slurm-\(UUID().uuidString)").path
        let script = repositoryRoot + "/scripts/slurm-cluster"
        let (status, output) = run(script, ["start", directory])
        if status == 0 { return SlurmCluster(directory: directory, script: script) }
        _ = run(script, ["stop", directory])
        try? FileManager.default.removeItem(atPath: directory)
        let reason = "the Slurm cluster did not start (scripts/slurm-cluster start, exit \(status)):\n\(output)"
        if required {
            Issue.record(Comment(rawValue: reason + "\nMMULAB_REQUIRE_SLURM=1: this machine must run the Slurm engine's tests"), sourceLocation: sourceLocation)
        } else {
            print("SKIPPED (set MMULAB_REQUIRE_SLURM=1 to make this a failure): \(reason)")
        }
        return nil
    }

    deinit {
        _ = Self.run(script, ["stop", directory])
        try? FileManager.default.removeItem(atPath: directory)
    }

    /// Runs `executable arguments...` to its end (killed past `limit`
    /// seconds): its status and its output (both streams, through a file:
    /// a daemon it starts never holds a pipe of ours open).
    static func run(_ executable: String, _ arguments: [String], environment: [String: String] = [:], limit: Double = 180) -> (Int32, String) {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: executable)
        process.arguments = arguments
        process.environment = ProcessInfo.processInfo.environment.merging(["PATH": path]) { $1 }.merging(environment) { $1 }
        let output = FileManager.default.temporaryDirectory.appendingPathComponent("mmulab-slurm-cluster-\(UUID().uuidString).out").path
        guard FileManager.default.createFile(atPath: output, contents: nil), let handle = FileHandle(forWritingAtPath: output) else {
            return (-1, "cannot create \(output)")
        }
        defer { try? FileManager.default.removeItem(atPath: output) }
        process.standardOutput = handle
        process.standardError = handle
        process.standardInput = FileHandle.nullDevice
        do {
            try process.run()
        } catch {
            return (-1, "cannot run \(executable): \(error)")
        }
        try? handle.close()
        let deadline = Date().addingTimeInterval(limit)
        while process.isRunning && Date() < deadline { usleep(20_000) }
        let text = (try? String(contentsOfFile: output, encoding: .utf8)) ?? ""
        if process.isRunning {
            kill(process.processIdentifier, SIGKILL)
            return (-1, text + "\n\(executable) \(arguments.joined(separator: " ")) did not end within \(Int(limit)) s (killed)")
        }
        process.waitUntilExit()
        return (process.terminationStatus, text)
    }
}
