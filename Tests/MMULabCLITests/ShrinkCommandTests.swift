import Foundation
import Testing

/// `mmulab shrink` and the run flags it is built on (`--record-schedule`,
/// `--schedule-file`, `--stop-at-step`), as a user meets them.
@Suite("mmulab shrink")
struct ShrinkCommandTests {
    /// A failing deterministic run to shrink. The seeds are fixed (not
    /// MMULAB_SEED): these are the README's figures, and a shrink's size
    /// depends on where the first failure happens to be.
    struct Proof: Sendable, CustomTestStringConvertible {
        var name: String
        var run: [String]
        var testDescription: String { name }
    }

    static let proofs = [
        Proof(name: "mirror-broken bug=stale on reclaim-storm (seed 2) under random", run: [
            "run", "reclaim-storm", "--seed", "2", "--duration", "0.02", "--plugin", "mirror-broken", "--plugin-options", "bug=stale",
            "--schedule", "random",
        ]),
        Proof(name: "free-before-invalidate on munmap-race under pct:3", run: [
            "run", "munmap-race", "--seed", "1", "--duration", "0.02", "--inject", "free-before-invalidate", "--schedule", "pct:3",
        ]),
    ]

    /// The bug titles of a report and the first step of each.
    static func bugs(_ json: [String: Any]) -> [(title: String, step: Int?)] {
        ((json["bugs"] as? [[String: Any]]) ?? []).map { bug in
            (bug["title"] as? String ?? "", (bug["first"] as? [String: Any])?["step"] as? Int)
        }
    }

    /// The issue's proof: the run shrinks to a few threads and a few hundred
    /// steps that still fail with the same bug, smaller in every measure, and
    /// the printed command, run again, fails with the same bug at the same step.
    @Test(arguments: proofs)
    func aFailingRunShrinksToAFewThreadsAndAFewHundredSteps(_ proof: Proof) throws {
        let sandbox = try Sandbox()
        let report = sandbox.path("report.json")
        let source = try sandbox.mmulab(proof.run + ["--plugin-directory", buildDirectory, "--json", report], limit: 300)
        #expect(source.status == 1, "\(source.transcript)")
        let original = try jsonObject(at: report)
        let title = try #require(Self.bugs(original).first?.title)
        let originalSchedule = try #require(original["schedule"] as? [String: Any])

        let directory = sandbox.path("shrunk")
        // A directory the user already had there, of the name the shrink's
        // candidates once used: it must come through untouched.
        try FileManager.default.createDirectory(atPath: directory + "/candidates", withIntermediateDirectories: true)
        try "mine\n".write(toFile: directory + "/candidates/keep", atomically: false, encoding: .utf8)
        let shrink = try sandbox.mmulab(["shrink", report, "--output-directory", directory, "--plugin-directory", buildDirectory], limit: 600)
        #expect(shrink.status == 0, "\(shrink.transcript)")
        let lines = shrink.stdout.split(separator: "\n").map(String.init)
        #expect(lines.first == "shrink    \(title) (bug 1 of \(Self.bugs(original).count) in \(report))", "\(shrink.transcript)")
        #expect(lines.contains { $0.hasPrefix("before    the report's run: bug at step ") }, "\(shrink.transcript)")
        #expect(lines.contains { $0.hasPrefix("after     bug at step ") }, "\(shrink.transcript)")
        for file in ["minimal.yaml", "minimal.schedule", "minimal.json"] {
            #expect(FileManager.default.fileExists(atPath: directory + "/" + file), "\(file) not written")
        }
        let left = try FileManager.default.contentsOfDirectory(atPath: directory)
        #expect(!left.contains { $0.hasPrefix(".candidates.") }, "the candidates' files are removed: \(left)")
        #expect((try? String(contentsOfFile: directory + "/candidates/keep", encoding: .utf8)) == "mine\n", "the user's files stay")

        // The minimal case: a few threads, a few hundred steps, the same bug; smaller than the run in every measure.
        let minimal = try jsonObject(at: directory + "/minimal.json")
        let schedule = try #require(minimal["schedule"] as? [String: Any])
        let step = try #require(Self.bugs(minimal).first { $0.title == title }?.step, "the minimal case lost '\(title)'\n\(shrink.transcript)")
        let threads = try #require(schedule["threads"] as? Int)
        let steps = try #require(schedule["steps"] as? Int)
        let label = "\(proof.name): bug at step \(step) of \(steps), \(threads) threads\n\(shrink.stdout)"
        #expect(threads <= 4 && step <= 1_000, "\(label)")
        #expect(steps < (originalSchedule["steps"] as? Int ?? 0) && threads < (originalSchedule["threads"] as? Int ?? 0), "\(label)")
        #expect((schedule["switches"] as? Int ?? .max) < (originalSchedule["switches"] as? Int ?? 0), "\(label)")
        #expect((schedule["choices"] as? [String: Any])?["listed"] as? Int ?? .max <= 8, "a handful of scheduling choices: \(label)")

        // The printed command, run again as the user would: the same bug at the same step.
        let replay = try #require(lines.first { $0.hasPrefix("replay    mmulab run ") }, "\(shrink.transcript)")
        let words = replay.dropFirst("replay    mmulab ".count).split(separator: " ").map(String.init)
        #expect(words.contains("--schedule-file") && words.contains("--stop-at-step"), "\(replay)")
        let again = try sandbox.mmulab(words + ["--json", sandbox.path("again.json")], limit: 120)
        #expect(again.status == 1, "\(again.transcript)")
        let rerun = try jsonObject(at: sandbox.path("again.json"))
        #expect(Self.bugs(rerun).first { $0.title == title }?.step == step, "\(again.transcript)")
        #expect(rerun["trail_digest"] as? String == minimal["trail_digest"] as? String, "the same run")
        // And the minimal report replays step by step.
        let stepped = try sandbox.mmulab(["replay", directory + "/minimal.json", "--trail", "--steps", "50"], limit: 120)
        #expect(stepped.status == 0 && stepped.stdout.contains("replayed: the same first finding at the same step"), "\(stepped.transcript)")
        // Both bugs are bad accesses the primary checked: the diagram runs up to the access itself.
        #expect(stepped.stdout.contains("steps up to the bad access (step "), "\(stepped.transcript)")
    }

    /// `run --shrink DIR`: a failing run is shrunk at once (its report goes
    /// into DIR), and the status is the run's; a clean run is not.
    @Test("run --shrink")
    func runShrinksItsFailure() throws {
        let sandbox = try Sandbox()
        let directory = sandbox.path("shrunk")
        let outcome = try sandbox.mmulab(
            ScheduleCommandTests.brokenRun + ["--plugin-directory", buildDirectory, "--shrink", directory], limit: 600)
        #expect(outcome.status == 1, "\(outcome.transcript)")
        let title = try #require(Self.bugs(try jsonObject(at: directory + "/report.json")).first?.title)
        #expect(outcome.stdout.contains("shrink    \(title) (bug 1 of "), "\(outcome.transcript)")
        #expect(outcome.stdout.contains("after     bug at step "), "\(outcome.transcript)")
        let minimal = try jsonObject(at: directory + "/minimal.json")
        #expect(Self.bugs(minimal).contains { $0.title == title }, "\(outcome.transcript)")
        let clean = try sandbox.mmulab(
            ["run", "munmap-race", "--seed", "3", "--duration", "0.01", "--schedule", "pct:3", "--plugin-directory", buildDirectory,
             "--shrink", sandbox.path("clean")], limit: 300)
        #expect(clean.status == 0 && !clean.stdout.contains("shrink "), "\(clean.transcript)")
        #expect(FileManager.default.fileExists(atPath: sandbox.path("clean/report.json")))
        expectBadInput(try sandbox.mmulab(["run", "munmap-race", "--shrink", directory]), mentions: ["--shrink", "--schedule"])
    }

    /// A deterministic report with findings, made quickly (skip-range-end: unpaired start/end).
    static func failingReport(_ sandbox: Sandbox) throws -> String {
        let report = sandbox.path("failing.json")
        let outcome = try sandbox.mmulab(
            ScheduleCommandTests.brokenRun + ["--plugin-directory", buildDirectory, "--json", report], limit: 300)
        #expect(outcome.status == 1, "\(outcome.transcript)")
        return report
    }

    @Test("shrink refuses what it cannot shrink: exit 2 and why")
    func shrinkRefusesBadInput() throws {
        let sandbox = try Sandbox()
        let free = sandbox.path("free.json")
        _ = try sandbox.mmulab(["run", "munmap-race", "--seed", "3", "--duration", "0.05", "--plugin-directory", buildDirectory, "--json", free])
        expectBadInput(try sandbox.mmulab(["shrink", free]), mentions: ["not deterministic"])
        expectBadInput(try sandbox.mmulab(["shrink", sandbox.path("absent.json")]), mentions: ["absent.json", "cannot read"])
        let failing = try Self.failingReport(sandbox)
        let titles = Self.bugs(try jsonObject(at: failing)).map(\.title)
        let unknown = try sandbox.mmulab(["shrink", failing, "--bug", "no such bug"])
        expectBadInput(unknown, mentions: ["no bug titled 'no such bug'"] + titles)
        expectBadInput(try sandbox.mmulab(["shrink", failing, "--max-runs", "5"]), mentions: ["--max-runs"])
        expectBadInput(try sandbox.mmulab(["shrink", failing, "--timeout", "0"]), mentions: ["--timeout"])
    }

    /// A run's recorded choices, followed from the file, give the same run;
    /// a run cut at a step ends there; the flags refuse what makes no sense.
    @Test("--record-schedule, --schedule-file and --stop-at-step")
    func recordFollowAndCut() throws {
        let sandbox = try Sandbox()
        let recorded = sandbox.path("run.schedule")
        let base = ["run", "munmap-race", "--seed", "5", "--duration", "0.02", "--plugin-directory", buildDirectory]
        let first = try sandbox.mmulab(base + ["--schedule", "random", "--record-schedule", recorded, "--json", sandbox.path("first.json")], limit: 300)
        #expect(first.status == 0, "\(first.transcript)")
        let text = try String(contentsOfFile: recorded, encoding: .utf8)
        #expect(text.hasPrefix("mmulab-schedule 1\n") && text.contains("strategy random:0.1\n"), "\(text.prefix(400))")
        let listed = text.split(separator: "\n").filter { !$0.hasPrefix("#") && $0.first?.isNumber == true }.count
        #expect(listed > 10, "a random run deviates from round robin often: \(listed)")
        let second = try sandbox.mmulab(base + ["--schedule-file", recorded, "--json", sandbox.path("second.json")], limit: 300)
        #expect(second.status == 0, "\(second.transcript)")
        #expect(second.stdout.contains("followed \(grouped(listed)) of \(grouped(listed)) listed choices"), "\(second.transcript)")
        let (a, b) = (try jsonObject(at: sandbox.path("first.json")), try jsonObject(at: sandbox.path("second.json")))
        #expect(a["trail_digest"] as? String == b["trail_digest"] as? String)
        let (sa, sb) = (a["schedule"] as? [String: Any], b["schedule"] as? [String: Any])
        #expect(sa?["schedule_digest"] as? String == sb?["schedule_digest"] as? String)
        #expect((b["replay"] as? [String: Any])?["command"] as? String == "mmulab " + (["run", "munmap-race", "--seed", "5", "--duration", "20ms",
            "--plugin-directory", buildDirectory, "--schedule-file", recorded]).joined(separator: " "))

        let cut = try sandbox.mmulab(base + ["--schedule", "pct:3", "--stop-at-step", "5000", "--json", sandbox.path("cut.json")], limit: 300)
        #expect(cut.status == 0, "\(cut.transcript)")
        let cutSteps = (try jsonObject(at: sandbox.path("cut.json"))["schedule"] as? [String: Any])?["steps"] as? Int ?? 0
        #expect(cutSteps > 5_000 && cutSteps < 20_000, "stopped past step 5,000 and torn down: \(cutSteps) steps")
        #expect(cut.stdout.contains("--stop-at-step 5000"), "the replay command carries the cut: \(cut.transcript)")

        expectBadInput(try sandbox.mmulab(base + ["--schedule", "random", "--schedule-file", recorded]), mentions: ["--schedule-file", "not both"])
        expectBadInput(try sandbox.mmulab(base + ["--stop-at-step", "10"]), mentions: ["--stop-at-step", "--schedule"])
        expectBadInput(try sandbox.mmulab(base + ["--record-schedule", sandbox.path("x")]), mentions: ["--record-schedule", "--schedule"])
        let broken = try sandbox.write("broken.schedule", "mmulab-schedule 1\nstrategy pct:3\nthrough 10\n5 3\n")
        expectBadInput(try sandbox.mmulab(base + ["--schedule-file", broken]), mentions: ["--schedule-file", "line 4"])
    }

    /// `1234567` as `1,234,567`, as the summary prints it.
    func grouped(_ value: Int) -> String {
        let digits = String(value)
        var out = ""
        for (index, digit) in digits.enumerated() {
            if index > 0, (digits.count - index) % 3 == 0 { out += "," }
            out.append(digit)
        }
        return out
    }
}
