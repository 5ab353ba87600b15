import Foundation
import Testing

/// `--schedule` as a user meets it: a deterministic run says how it was
/// scheduled, its digests replay, its findings say their step, and the
/// replay command carries the schedule.
@Suite("mmulab --schedule")
struct ScheduleCommandTests {
    static let brokenRun = ["run", "munmap-race", "--seed", "11", "--duration", "0.05", "--inject", "skip-range-end", "--schedule", "pct:3"]

    @Test("a deterministic run with findings: the same digests and findings twice, the steps, the replay command carries --schedule")
    func aDeterministicRunReplays() throws {
        let sandbox = try Sandbox()
        var reports: [[String: Any]] = []
        var outputs: [String] = []
        for name in ["first.json", "second.json"] {
            let outcome = try sandbox.mmulab(Self.brokenRun + ["--plugin-directory", buildDirectory, "--json", sandbox.path(name)], limit: 300)
            #expect(outcome.status == 1, "\(outcome.transcript)")
            reports.append(try jsonObject(at: sandbox.path(name)))
            outputs.append(outcome.stdout)
        }
        let summary = outputs[0]
        #expect(summary.contains("schedule  pct:3, deterministic:"), "\(summary)")
        #expect(summary.contains("trail digest 0x"), "\(summary)")
        #expect(summary.contains("--schedule pct:3"), "the replay command carries the schedule: \(summary)")
        #expect(summary.contains("[step "), "findings say their step: \(summary)")
        let (first, second) = (reports[0], reports[1])
        let digest = first["trail_digest"] as? String
        #expect(digest?.count == 18 && digest == second["trail_digest"] as? String, "\(String(describing: digest))")
        let schedule = try #require(first["schedule"] as? [String: Any])
        #expect(schedule["strategy"] as? String == "pct:3")
        #expect((schedule["escapes"] as? [Any])?.isEmpty == true)
        #expect(schedule["schedule_digest"] as? String == (second["schedule"] as? [String: Any])?["schedule_digest"] as? String)
        let findings = try #require(first["findings"] as? [[String: Any]])
        let again = try #require(second["findings"] as? [[String: Any]])
        #expect(!findings.isEmpty && findings.count == again.count)
        #expect(findings.first?["step"] as? Int != nil && findings.first?["step"] as? Int == again.first?["step"] as? Int)
        #expect(findings.first?["detail"] as? String == again.first?["detail"] as? String)
        #expect(first["findings_total"] as? Int == second["findings_total"] as? Int)

        // mmulab replay: the first finding comes back at its step, and the steps before it show as a race diagram.
        let replay = try sandbox.mmulab(["replay", sandbox.path("first.json"), "--trail", "--steps", "60", "--plugin-directory", buildDirectory], limit: 300)
        #expect(replay.status == 0, "\(replay.transcript)")
        #expect(replay.stdout.contains("replayed: the same first finding at the same step"), "\(replay.transcript)")
        #expect(replay.stdout.contains("the last 60 steps up to the first finding"), "\(replay.transcript)")
        #expect(replay.stdout.contains("●") && replay.stdout.contains("▶ step"), "\(replay.transcript)")
        // A report whose finding is not what the run finds is not replayed (exit 1).
        let text = try String(contentsOfFile: sandbox.path("first.json"), encoding: .utf8)
        let step = try #require(findings.first?["step"] as? Int)
        let forged = try sandbox.write("forged.json", text.replacingOccurrences(of: "\"step\": \(step)", with: "\"step\": \(step + 1)"))
        let refused = try sandbox.mmulab(["replay", forged, "--plugin-directory", buildDirectory], limit: 300)
        #expect(refused.status == 1 && refused.stdout.contains("NOT REPLAYED"), "\(refused.transcript)")
    }

    @Test("--kernel-hand-over: the same run as handing over in user space; without --schedule it is refused (exit 2)")
    func theKernelHandOverRunsTheSameRun() throws {
        let sandbox = try Sandbox()
        var digests: [String?] = []
        for extra in [[], ["--kernel-hand-over"]] {
            let json = sandbox.path("run\(digests.count).json")
            let outcome = try sandbox.mmulab(Self.brokenRun + ["--plugin-directory", buildDirectory, "--json", json] + extra, limit: 300)
            #expect(outcome.status == 1, "\(outcome.transcript)")
            let report = try jsonObject(at: json)
            digests.append(report["trail_digest"] as? String)
            digests.append((report["schedule"] as? [String: Any])?["schedule_digest"] as? String)
        }
        #expect(digests[0] != nil && digests[0] == digests[2] && digests[1] != nil && digests[1] == digests[3], "\(digests)")
        let refused = try sandbox.mmulab(["run", "munmap-race", "--duration", "0.05", "--kernel-hand-over"])
        #expect(refused.status == 2, "\(refused.transcript)")
        #expect(refused.stderr.contains("--kernel-hand-over applies to a deterministic run: add --schedule"), "\(refused.transcript)")
    }

    @Test("replaying a free run's report, or one that is not there: exit 2")
    func replayRefusesWhatItCannotReplay() throws {
        let sandbox = try Sandbox()
        let report = sandbox.path("free.json")
        _ = try sandbox.mmulab(["run", "munmap-race", "--seed", "3", "--duration", "0.1", "--plugin-directory", buildDirectory, "--json", report])
        expectBadInput(try sandbox.mmulab(["replay", report, "--trail"]), mentions: ["not deterministic"])
        expectBadInput(try sandbox.mmulab(["replay", sandbox.path("absent.json")]), mentions: ["absent.json", "cannot read"])
        expectBadInput(try sandbox.mmulab(["replay", report, "--steps", "0"]), mentions: ["--steps"])
    }

    @Test("a free run's JSON has a trail digest and no schedule")
    func aFreeRunHasNoSchedule() throws {
        let sandbox = try Sandbox()
        let report = sandbox.path("run.json")
        let outcome = try sandbox.mmulab(["run", "munmap-race", "--seed", "7", "--duration", "0.2", "--plugin-directory", buildDirectory, "--json", report])
        #expect(outcome.status == 0, "\(outcome.transcript)")
        let json = try jsonObject(at: report)
        #expect(json["schedule"] == nil)
        #expect((json["trail_digest"] as? String)?.hasPrefix("0x") == true)
        #expect(!outcome.stdout.contains("schedule "), "\(outcome.transcript)")
    }

    @Test("a bad --schedule: exit 2, the flag and the syntax on stderr", arguments: ["fifo", "pct:0", "pct:17", "random:2", "random:0", "pct:x"])
    func badSchedule(_ value: String) throws {
        let outcome = try Sandbox().mmulab(["run", "munmap-race", "--schedule", value])
        expectBadInput(outcome, mentions: ["--schedule", value])
        let campaign = try Sandbox().mmulab(["campaign", "munmap-race", "--seeds", "1", "--schedule", value])
        expectBadInput(campaign, mentions: ["--schedule"])
    }

    @Test("a campaign under --schedule: its runs are scheduled and the replay command carries the schedule")
    func aScheduledCampaign() throws {
        let sandbox = try Sandbox()
        // The sleepy fixture's device reads never return the data written: lost writes.
        let leaky = try sandbox.write("sleepy.yaml", CampaignCommandTests.fixtureScenario("sleepy"))
        let summary = sandbox.path("campaign.json")
        let outcome = try sandbox.mmulab(
            ["campaign", leaky, "--seeds", "4", "--duration", "0.05", "--schedule", "pct:3", "--json", summary], limit: 300)
        #expect(outcome.status == 1, "\(outcome.transcript)")
        let run = try #require((try jsonObject(at: summary)["runs"] as? [[String: Any]])?.first)
        #expect(run["outcome"] as? String == "findings", "\(run)")
        #expect((run["replay"] as? String)?.hasSuffix("--schedule pct:3") == true, "\(run)")
        #expect(outcome.stdout.contains("--schedule pct:3"), "\(outcome.transcript)")
    }

    @Test("a campaign with --kernel-hand-over: its runs hand over through the kernel, their replay says so; refused without --schedule")
    func aCampaignWithTheKernelHandOver() throws {
        let sandbox = try Sandbox()
        let leaky = try sandbox.write("sleepy.yaml", CampaignCommandTests.fixtureScenario("sleepy"))
        let summary = sandbox.path("campaign.json")
        let outcome = try sandbox.mmulab(
            ["campaign", leaky, "--seeds", "4", "--duration", "0.05", "--schedule", "pct:3", "--kernel-hand-over", "--json", summary],
            limit: 300)
        #expect(outcome.status == 1, "\(outcome.transcript)")
        let run = try #require((try jsonObject(at: summary)["runs"] as? [[String: Any]])?.first)
        #expect(run["outcome"] as? String == "findings", "\(run)")
        #expect((run["replay"] as? String)?.contains("--schedule pct:3 --kernel-hand-over") == true, "\(run)")
        let refused = try sandbox.mmulab(["campaign", leaky, "--seeds", "4", "--kernel-hand-over"])
        #expect(refused.status == 2, "\(refused.transcript)")
        #expect(refused.stderr.contains("--kernel-hand-over applies to a deterministic campaign: add --schedule"), "\(refused.transcript)")
    }
}
