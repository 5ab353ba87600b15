import Foundation
import Testing

/// `mmulab campaign --engine slurm` against a real single-node Slurm
/// cluster (slurm-wlm, munge) started for the test: the same runs give the
/// same summary as the local engine (clean runs, a broken plugin's
/// findings, a crashing plugin, a run past its time limit), a campaign
/// submitted with --no-wait is collected later, and the bug database holds
/// both campaigns.
///
/// Serialized: each test starts and stops its own cluster, and two clusters
/// share one munged.
@Suite("mmulab campaign --engine slurm", .serialized)
struct SlurmCampaignTests {
    /// A scenario of `seconds` whose device is `plugin` (with `options`),
    /// reading and writing a mapping that is unmapped and mapped again
    /// under it.
    static func scenario(_ name: String, plugin: String, options: String = "", seconds: Int = 1) -> String {
        """
        name: \(name)
        length: { seconds: \(seconds) }
        machine: { frames: 1024, swap-slots: 4096 }
        spaces:
          - name: app
            mappings: [ { name: churned, pages: 64 } ]
        plugins:
          - { plugin: \(plugin), name: dev, options: "\(options)", bindings: [ { space: app, mapping: churned } ] }
        workloads:
          - { name: reader, actor: dev, space: app, mapping: churned, threads: 2 }
        pressure:
          churn: [ { space: app, mapping: churned, rate: 200 } ]
        """
    }

    /// What a campaign's JSON summary says that must not depend on the
    /// engine: every run's scenario, seed and outcome (with its signal or
    /// exit status), and the totals per scenario. Not the durations, nor
    /// the number of findings (how many a racing run sees varies).
    static func engineIndependent(_ summary: [String: Any]) -> [String] {
        let runs = (summary["runs"] as? [[String: Any]] ?? []).map { run in
            var line = "\(run["scenario"] ?? "?") seed \(run["seed"] ?? "?"): \(run["outcome"] ?? "?")"
            if let signal = run["signal"] { line += " signal \(signal)" }
            if let status = run["exit_status"] { line += " exit \(status)" }
            if let replay = run["replay"] { line += " replay \(replay)" }
            return line
        }.sorted()
        let perScenario = (summary["per_scenario"] as? [[String: Any]] ?? []).map { totals in
            totals.keys.sorted().map { "\($0)=\(totals[$0]!)" }.joined(separator: " ")
        }
        return runs + perScenario + ["planned \(summary["runs_planned"] ?? "?")"]
    }

    @Test("the same campaign through Slurm and through the local pool: the same summary, and one bug database holding both")
    func slurmSummaryEqualsLocal() throws {
        guard let cluster = try SlurmCluster.start() else { return }
        let sandbox = try Sandbox()
        let clean = try sandbox.write("clean.yaml", Self.scenario("clean", plugin: "mirror-c"))
        let broken = try sandbox.write("broken.yaml", Self.scenario("broken", plugin: "mirror-broken", options: "bug=stale"))
        let crashes = try sandbox.write("crashes.yaml", CampaignCommandTests.fixtureScenario("crashes"))
        let hangs = try sandbox.write("hangs.yaml", Self.scenario("hangs", plugin: "mirror-c", seconds: 600))
        // Relative names, as a user types them: the Slurm tasks start in the directory the campaign was started in.
        let names = [clean, broken, crashes, hangs].map { String($0.split(separator: "/").last!) }
        let arguments = ["campaign"] + names + ["--seeds", "1..2", "--jobs", "2", "--timeout", "8"]

        let local = try sandbox.mmulab(arguments + ["--json", "local.json"], limit: 120)
        #expect(local.status == 1, "\(local.transcript)")
        let slurm = try sandbox.mmulab(arguments + ["--engine", "slurm", "--json", "slurm.json"], environment: cluster.environment, limit: 240)
        #expect(slurm.status == 1, "\(slurm.transcript)")
        #expect(slurm.stdout.contains("slurm     job "), "\(slurm.transcript)")

        let localSummary = try jsonObject(at: sandbox.path("local.json"))
        let slurmSummary = try jsonObject(at: sandbox.path("slurm.json"))
        let expected = Self.engineIndependent(localSummary)
        #expect(Self.engineIndependent(slurmSummary) == expected, "local:\n\(local.stdout)\nslurm:\n\(slurm.stdout)")
        // And the local answer is the right one: each kind of run where it belongs.
        let totals = try #require(localSummary["totals"] as? [String: Any])
        #expect(totals["runs"] as? Int == 8 && totals["clean"] as? Int == 2 && totals["findings"] as? Int == 2, "\(local.stdout)")
        #expect(totals["crashed"] as? Int == 2 && totals["hung"] as? Int == 2, "\(local.stdout)")
        for seed in 1...2 {
            // The fixture abort()s in its access: a plugin oops (exit 4), its signal read from the oops.
            #expect(expected.contains("crashes.yaml seed \(seed): crashed signal SIGABRT replay mmulab run crashes.yaml --seed \(seed)"), "\(expected)")
            #expect(expected.contains { $0.hasPrefix("hangs.yaml seed \(seed): hung") }, "\(expected)")
            #expect(expected.contains { $0.hasPrefix("broken.yaml seed \(seed): findings") }, "\(expected)")
        }
        // Each Slurm task left its report in the campaign directory.
        let campaigns = try FileManager.default.contentsOfDirectory(atPath: sandbox.path("mmulab-campaigns")).filter { $0 != "bugs.sqlite" }
        #expect(campaigns.count == 2, "\(campaigns)")

        // One database, both campaigns: the broken plugin's bug was hit in
        // two runs of each, the crash is a bug of its own.
        let bugs = try sandbox.mmulab(["bugs", "--json", "bugs.json"])
        #expect(bugs.status == 0, "\(bugs.transcript)")
        #expect(bugs.stdout.contains("from 2 campaigns"), "\(bugs.transcript)")
        let list = try #require(try jsonObject(at: sandbox.path("bugs.json"))["bugs"] as? [[String: Any]])
        let crash = try #require(list.first { ($0["title"] as? String)?.hasPrefix("crash: plugin oops: SIGABRT in dev#0 access") == true }, "\(bugs.stdout)")
        #expect(crash["runs"] as? Int == 4 && crash["campaigns"] as? Int == 2, "\(crash)")
        let hang = try #require(list.first { ($0["title"] as? String)?.hasPrefix("hang: hangs.yaml") == true }, "\(bugs.stdout)")
        #expect(hang["runs"] as? Int == 4, "\(hang)")
        let found = list.filter { ($0["scenarios"] as? [String]) == ["broken.yaml"] }
        #expect(!found.isEmpty && found.allSatisfy { ($0["invariant"] as? String).map { !["crashed", "hung"].contains($0) } == true }, "\(bugs.stdout)")
        #expect(found.contains { $0["campaigns"] as? Int == 2 }, "the broken plugin's bug in both campaigns: \(bugs.stdout)")
        #expect(found.allSatisfy { ($0["shortest_replay"] as? String)?.hasPrefix("mmulab run broken.yaml --seed ") == true }, "\(bugs.stdout)")
    }

    @Test("--no-wait returns with the job id; collect says still running (exit 3), then --wait gives the summary; two runs per task")
    func noWaitThenCollect() throws {
        guard let cluster = try SlurmCluster.start() else { return }
        let sandbox = try Sandbox()
        let clean = try sandbox.write("clean.yaml", Self.scenario("clean", plugin: "mirror-c", seconds: 3))
        let submitted = try sandbox.mmulab(
            ["campaign", "--engine", "slurm", "--no-wait", clean, "--seeds", "1..3", "--jobs", "2", "--runs-per-task", "2"],
            environment: cluster.environment)
        #expect(submitted.status == 0, "\(submitted.transcript)")
        #expect(submitted.stdout.contains("2 array tasks of up to 2 runs"), "\(submitted.transcript)")
        let directory = try #require(
            submitted.stdout.split(separator: "\n").first { $0.hasPrefix("campaign  ") }.map { String($0.dropFirst("campaign  ".count)) },
            "\(submitted.transcript)")
        #expect(submitted.stdout.contains("collect   mmulab campaign collect "), "\(submitted.transcript)")

        let early = try sandbox.mmulab(["campaign", "collect", directory], environment: cluster.environment)
        #expect(early.status == 3, "a 3 s run cannot have ended yet: \(early.transcript)")
        #expect(early.stdout.contains("still running"), "\(early.transcript)")

        let collected = try sandbox.mmulab(["campaign", "collect", "--wait", directory, "--json", "collected.json"], environment: cluster.environment, limit: 120)
        #expect(collected.status == 0, "\(collected.transcript)")
        #expect(collected.stdout.contains("every run clean"), "\(collected.transcript)")
        let totals = try #require(try jsonObject(at: sandbox.path("collected.json"))["totals"] as? [String: Any])
        #expect(totals["runs"] as? Int == 3 && totals["clean"] as? Int == 3, "\(totals)")

        // Collecting again counts nothing twice.
        let again = try sandbox.mmulab(["campaign", "collect", directory])
        #expect(again.status == 0, "\(again.transcript)")
        let bugs = try sandbox.mmulab(["bugs"])
        #expect(bugs.stdout.hasPrefix("0 bugs from 1 campaign"), "\(bugs.transcript)")
    }
}
