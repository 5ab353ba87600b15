import Foundation
import Testing

/// Reports never destroy anything: a path that is not a regular file is
/// refused before the run (exit 2, one line, nothing run), relative paths
/// of any length work in every command, `-` is standard output, and Ctrl-C
/// still gives the summary and the reports.
@Suite("mmulab output paths")
struct OutputPathTests {
    static let quick = ["--duration", "0.5", "--plugin-directory", buildDirectory]

    /// Expects a refusal before the run: exit 2, one line on stderr naming
    /// `mentions`, no Foundation error domain, and no summary (nothing ran).
    func expectRefused(_ outcome: Outcome, mentions: [String], sourceLocation: SourceLocation = #_sourceLocation) {
        expectBadInput(outcome, mentions: mentions, sourceLocation: sourceLocation)
        let lines = outcome.stderr.split(separator: "\n")
        #expect(lines.count == 1, "one line expected\n\(outcome.transcript)", sourceLocation: sourceLocation)
        for word in ["NSCocoaErrorDomain", "Error Domain", "error 256"] {
            #expect(!outcome.stderr.contains(word), "\(outcome.transcript)", sourceLocation: sourceLocation)
        }
        #expect(!outcome.stdout.contains("accesses"), "it ran:\n\(outcome.transcript)", sourceLocation: sourceLocation)
    }

    @Test("--json and --report into an existing directory: refused, the directory and its files stay")
    func directoryTarget() throws {
        let sandbox = try Sandbox()
        try FileManager.default.createDirectory(atPath: sandbox.path("out"), withIntermediateDirectories: false)
        _ = try sandbox.write("out/keep.txt", "precious")
        for flag in ["--json", "--report"] {
            expectRefused(try sandbox.mmulab(["run", "munmap-race", flag, "out"] + Self.quick), mentions: [flag, "out", "a directory"])
        }
        expectRefused(try sandbox.mmulab(["campaign", "munmap-race", "--seeds", "1", "--json", "out"] + Self.quick), mentions: ["--json", "a directory"])
        #expect(try String(contentsOfFile: sandbox.path("out/keep.txt"), encoding: .utf8) == "precious")
    }

    @Test("a device node and a FIFO as the report: refused and left as they were")
    func specialFiles() throws {
        let sandbox = try Sandbox()
        #expect(mkfifo(sandbox.path("fifo"), 0o644) == 0)
        let madeNode = getuid() == 0 && mknod(sandbox.path("null"), S_IFCHR | 0o666, (1 << 8) | 3) == 0
        expectRefused(try sandbox.mmulab(["run", "munmap-race", "--report", "fifo"] + Self.quick), mentions: ["--report fifo", "a FIFO"])
        expectRefused(try sandbox.mmulab(["run", "munmap-race", "--json", "/dev/null"] + Self.quick), mentions: ["/dev/null", "a character device"])
        if madeNode {
            expectRefused(try sandbox.mmulab(["demo", "--json", "null"] + Self.quick), mentions: ["--json null", "a character device"])
            var info = stat()
            #expect(lstat(sandbox.path("null"), &info) == 0 && info.st_mode & S_IFMT == S_IFCHR, "the device node was replaced")
        }
        var info = stat()
        #expect(lstat(sandbox.path("fifo"), &info) == 0 && info.st_mode & S_IFMT == S_IFIFO, "the FIFO was replaced")
    }

    @Test("an empty path, /proc and /sys: refused before anything runs, in the tool's own words")
    func unwritablePlaces() throws {
        let sandbox = try Sandbox()
        expectRefused(try sandbox.mmulab(["run", "munmap-race", "--json", ""] + Self.quick), mentions: ["--json ''", "empty path"])
        expectRefused(try sandbox.mmulab(["run", "munmap-race", "--json", "/proc/version"] + Self.quick), mentions: ["/proc/version", "kernel filesystem"])
        expectRefused(try sandbox.mmulab(["run", "munmap-race", "--report", "/sys/mmulab.html"] + Self.quick), mentions: ["/sys", "kernel filesystem"])
    }

    @Test("one-character relative paths work in run, demo and campaign")
    func shortRelativePaths() throws {
        let sandbox = try Sandbox()
        let run = try sandbox.mmulab(["run", "munmap-race", "--json", "x", "--report", "r"] + Self.quick)
        #expect(run.status == 0, "\(run.transcript)")
        #expect(try jsonObject(at: sandbox.path("x"))["scenario"] as? String == "munmap-race")
        #expect(try String(contentsOfFile: sandbox.path("r"), encoding: .utf8).hasPrefix("<!DOCTYPE html>"))
        let demo = try sandbox.mmulab(["demo", "--json", "d"] + Self.quick)
        #expect(demo.status == 0, "\(demo.transcript)")
        #expect(try jsonObject(at: sandbox.path("d"))["scenario"] as? String == "reclaim-storm")
        let campaign = try sandbox.mmulab(["campaign", "munmap-race", "--seeds", "1", "--json", "c"] + Self.quick)
        #expect(campaign.status == 0, "\(campaign.transcript)")
        #expect(try jsonObject(at: sandbox.path("c"))["clean"] as? Bool == true)
    }

    @Test("--json - puts the JSON alone on standard output and the summary on standard error")
    func jsonToStandardOutput() throws {
        let sandbox = try Sandbox()
        let outcome = try sandbox.mmulab(["run", "munmap-race", "--json", "-"] + Self.quick)
        #expect(outcome.status == 0, "\(outcome.transcript)")
        let object = try JSONSerialization.jsonObject(with: Data(outcome.stdout.utf8)) as? [String: Any]
        #expect(object?["scenario"] as? String == "munmap-race", "\(outcome.transcript)")
        #expect(outcome.stderr.contains("result    clean"), "\(outcome.transcript)")
        let both = try sandbox.mmulab(["run", "munmap-race", "--json", "-", "--report", "-"] + Self.quick)
        #expect(both.status == 2 && both.stderr.contains("standard output"), "\(both.transcript)")
    }

    @Test("a scenario path that is a directory, a FIFO or a symbolic link loop: one line, exit 2")
    func badScenarioFiles() throws {
        let sandbox = try Sandbox()
        try FileManager.default.createDirectory(atPath: sandbox.path("dir.yaml"), withIntermediateDirectories: false)
        #expect(mkfifo(sandbox.path("fifo.yaml"), 0o644) == 0)
        try FileManager.default.createSymbolicLink(atPath: sandbox.path("a.yaml"), withDestinationPath: sandbox.path("b.yaml"))
        try FileManager.default.createSymbolicLink(atPath: sandbox.path("b.yaml"), withDestinationPath: sandbox.path("a.yaml"))
        for (name, why) in [("dir.yaml", "a directory"), ("fifo.yaml", "a FIFO"), ("a.yaml", "a loop of symbolic links")] {
            for command in [["run"], ["scenarios", "check"]] {
                expectRefused(try sandbox.mmulab(command + [sandbox.path(name)], limit: 20), mentions: [name, why])
            }
        }
    }

    @Test("SIGINT during run: the summary marked interrupted, the JSON and HTML written, exit 130")
    func interruptedRun() throws {
        let sandbox = try Sandbox()
        let started = try sandbox.start(
            ["run", "munmap-race", "--duration", "60", "--plugin-directory", buildDirectory, "--json", "run.json", "--report", "run.html"])
        usleep(2_000_000)
        started.process.interrupt()
        let outcome = sandbox.finish(started, limit: 30)
        #expect(outcome.status == 130, "\(outcome.transcript)")
        #expect(outcome.stdout.contains("INTERRUPTED"), "\(outcome.transcript)")
        #expect(outcome.stdout.contains("accesses"), "\(outcome.transcript)")
        let json = try jsonObject(at: sandbox.path("run.json"))
        #expect(json["interrupted"] as? Bool == true)
        #expect((json["elapsed_seconds"] as? Double ?? 60) < 30)
        #expect(try String(contentsOfFile: sandbox.path("run.html"), encoding: .utf8).contains("interrupted"))
    }

    @Test("SIGINT during a campaign: the JSON summary is written, marked interrupted")
    func interruptedCampaign() throws {
        let sandbox = try Sandbox()
        let started = try sandbox.start(
            ["campaign", "munmap-race", "--seeds", "1..4", "--duration", "30", "--plugin-directory", buildDirectory, "--json", "c.json"])
        usleep(2_000_000)
        started.process.interrupt()
        let outcome = sandbox.finish(started, limit: 30)
        #expect(outcome.stdout.contains("INTERRUPTED"), "\(outcome.transcript)")
        let json = try jsonObject(at: sandbox.path("c.json"))
        #expect(json["interrupted"] as? Bool == true, "\(json)")
    }
}
