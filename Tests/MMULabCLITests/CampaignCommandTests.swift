import Foundation
import Testing

/// `mmulab campaign`: bad input refused before anything runs; runs as child
/// processes whose crashes, hangs and findings are reported with their
/// seeds while the campaign goes on; no temporary files left behind.
@Suite("mmulab campaign")
struct CampaignCommandTests {
    /// A one-second scenario whose only device is the fixture plugin `fixture` (libmmulab-fixture-NAME.so).
    static func fixtureScenario(_ fixture: String) -> String {
        """
        name: \(fixture)-device
        length: { seconds: 1 }
        machine: { frames: 256, swap-slots: 256 }
        spaces:
          - name: app
            mappings: [ { name: heap, pages: 16 } ]
        plugins:
          - { plugin: \(buildDirectory)/libmmulab-fixture-\(fixture).so, name: dev, bindings: [ { space: app, mapping: heap } ] }
        workloads:
          - { name: poke, actor: dev, space: app, mapping: heap }
        """
    }

    /// A directory for the campaign's TMPDIR, to see what it leaves there.
    static func temporaryDirectory(in sandbox: Sandbox) throws -> String {
        try FileManager.default.createDirectory(atPath: sandbox.path("tmp"), withIntermediateDirectories: true)
        return sandbox.path("tmp")
    }

    static func leftovers(in directory: String) -> [String] {
        (FileManager.default.enumerator(atPath: directory)?.allObjects as? [String]) ?? []
    }

    @Test("bad --seeds: exit 2, --seeds named on stderr", arguments: ["5..2", "x", "1..20000", "1..", "..4", "-3", "1..2..3"])
    func badSeeds(seeds: String) throws {
        let outcome = try Sandbox().mmulab(["campaign", "munmap-race", "--seeds", seeds])
        expectBadInput(outcome, mentions: ["--seeds"])
        #expect(!outcome.stdout.contains("campaign:"), "it ran: \(outcome.transcript)")
    }

    @Test("Slurm's options without --engine slurm: exit 2, naming them", arguments: [["--no-wait"], ["--partition", "p"], ["--runs-per-task", "2"]])
    func slurmOptionsNeedSlurm(options: [String]) throws {
        let outcome = try Sandbox().mmulab(["campaign", "munmap-race", "--seeds", "1"] + options)
        expectBadInput(outcome, mentions: [options[0], "--engine slurm"])
    }

    @Test("a bad scenario among good ones: exit 2, each bad one named, nothing run")
    func badScenarioStopsEverything() throws {
        let sandbox = try Sandbox()
        let malformed = try sandbox.write("malformed.yaml", "name: tiny\nlength: { seconds: 1 }\nflavour: vanilla\n")
        let outcome = try sandbox.mmulab(["campaign", "munmap-race", "no-such-scenario", malformed, "--seeds", "1..3"])
        expectBadInput(outcome, mentions: ["no-such-scenario", "\(malformed):3:", "flavour"])
        #expect(!outcome.stdout.contains("campaign:"), "it ran: \(outcome.transcript)")
    }

    @Test("a small clean campaign: exit 0, 2 clean runs, a JSON summary, no temporary files left")
    func cleanCampaign() throws {
        let sandbox = try Sandbox()
        let tmp = try Self.temporaryDirectory(in: sandbox)
        let summary = sandbox.path("campaign.json")
        let outcome = try sandbox.mmulab(
            ["campaign", "munmap-race", "--seeds", "1..2", "--jobs", "2", "--duration", "1", "--plugin-directory", buildDirectory,
             "--json", summary],
            environment: ["TMPDIR": tmp])
        #expect(outcome.status == 0, "\(outcome.transcript)")
        #expect(outcome.stdout.contains("every run clean"), "\(outcome.transcript)")
        let json = try jsonObject(at: summary)
        let totals = try #require(json["totals"] as? [String: Any])
        #expect(totals["runs"] as? Int == 2)
        #expect(totals["clean"] as? Int == 2)
        #expect(json["clean"] as? Bool == true)
        #expect(Self.leftovers(in: tmp).isEmpty, "left in TMPDIR: \(Self.leftovers(in: tmp))")
    }

    @Test("runs that check no read are counted skipped, never clean: the result says they prove nothing; exit 0 as for run")
    func skippedRuns() throws {
        let sandbox = try Sandbox()
        let nothing = try sandbox.write("nothing.yaml", FindingsCommandTests.nothingChecked)
        let summary = sandbox.path("campaign.json")
        let outcome = try sandbox.mmulab(
            ["campaign", nothing, "munmap-race", "--seeds", "1..2", "--jobs", "2", "--duration", "500ms",
             "--plugin-directory", buildDirectory, "--json", summary])
        #expect(outcome.status == 0, "\(outcome.transcript)")
        #expect(!outcome.stdout.contains("every run clean"), "\(outcome.transcript)")
        #expect(outcome.stdout.contains("result: no run failed, but 2 of 4 checked no read (SKIP: they prove nothing)"), "\(outcome.transcript)")
        let json = try jsonObject(at: summary)
        let totals = try #require(json["totals"] as? [String: Any])
        #expect(totals["skipped"] as? Int == 2 && totals["clean"] as? Int == 2 && totals["runs"] as? Int == 4, "\(totals)")
        let skipped = (json["runs"] as? [[String: Any]] ?? []).filter { $0["outcome"] as? String == "skipped" }
        #expect(skipped.allSatisfy { $0["scenario"] as? String == nothing }, "\(skipped)")
        #expect(skipped.compactMap { $0["seed"] as? Int }.sorted() == [1, 2], "\(skipped)")
    }

    @Test("a run whose plugin crashes: reported as crashed (a plugin oops) with its seed, report and replay command; the campaign goes on; exit 1")
    func crashingRun() throws {
        let sandbox = try Sandbox()
        let tmp = try Self.temporaryDirectory(in: sandbox)
        let crashing = try sandbox.write("crashes.yaml", Self.fixtureScenario("crashes"))
        let summary = sandbox.path("campaign.json")
        let outcome = try sandbox.mmulab(
            ["campaign", crashing, "munmap-race", "--seeds", "1..2", "--jobs", "2", "--duration", "1",
             "--plugin-directory", buildDirectory, "--json", summary],
            environment: ["TMPDIR": tmp])
        #expect(outcome.status == 1, "\(outcome.transcript)")
        for seed in 1...2 {
            let line = outcome.stdout.split(separator: "\n").first { $0.hasPrefix("\(crashing)  ") && $0.contains("  \(seed)  ") }
            #expect(line?.contains("crashed (plugin oops, SIGABRT)") == true, "\(outcome.transcript)")
            #expect(line?.contains("plugin oops: SIGABRT in dev#0 access") == true, "\(outcome.transcript)")
            #expect(line?.contains("mmulab run \(crashing) --seed \(seed)") == true, "\(outcome.transcript)")
        }
        let json = try jsonObject(at: summary)
        let totals = try #require(json["totals"] as? [String: Any])
        #expect(totals["runs"] as? Int == 4)
        #expect(totals["crashed"] as? Int == 2)
        #expect(totals["clean"] as? Int == 2, "the campaign goes on after a crash")
        let crashed = (json["runs"] as? [[String: Any]] ?? []).filter { $0["outcome"] as? String == "crashed" }
        #expect(crashed.compactMap { $0["seed"] as? Int }.sorted() == [1, 2])
        #expect(crashed.allSatisfy { $0["signal"] as? String == "SIGABRT" && $0["plugin_oops"] as? Bool == true }, "\(crashed)")
        for run in crashed {
            let report = (run["log_excerpt"] as? [String] ?? []).joined(separator: "\n")
            #expect(report.contains("mmulab oops") && report.contains("dev#0") && report.contains("access, binding #1"), "the oops is attached: \(report)")
        }
        #expect(Self.leftovers(in: tmp).isEmpty, "left in TMPDIR: \(Self.leftovers(in: tmp))")
    }

    @Test("a run past --timeout is killed and reported as hung; exit 1")
    func hungRun() throws {
        let sandbox = try Sandbox()
        let started = Date()
        let outcome = try sandbox.mmulab(
            ["campaign", "munmap-race", "--seeds", "3", "--duration", "20", "--timeout", "0.5", "--plugin-directory", buildDirectory])
        #expect(outcome.status == 1, "\(outcome.transcript)")
        #expect(outcome.stdout.contains("hung (killed at"), "\(outcome.transcript)")
        #expect(outcome.stdout.contains("mmulab run munmap-race --seed 3"), "\(outcome.transcript)")
        #expect(Date().timeIntervalSince(started) < 15, "the hung run was not killed at its timeout")
    }

    @Test("a run with findings: its count and first finding come from its JSON; exit 1")
    func findingsRun() throws {
        let sandbox = try Sandbox()
        // The sleepy fixture's device reads never return the data written: lost writes.
        let leaky = try sandbox.write("sleepy.yaml", Self.fixtureScenario("sleepy"))
        let summary = sandbox.path("campaign.json")
        let outcome = try sandbox.mmulab(["campaign", leaky, "--seeds", "4", "--duration", "0.5", "--json", summary])
        #expect(outcome.status == 1, "\(outcome.transcript)")
        #expect(outcome.stdout.contains("findings ("), "\(outcome.transcript)")
        let run = try #require((try jsonObject(at: summary)["runs"] as? [[String: Any]])?.first)
        #expect(run["outcome"] as? String == "findings")
        #expect((run["findings_total"] as? Int ?? 0) > 0)
        #expect((run["first_finding"] as? String)?.hasPrefix("lost write:") == true, "\(run)")
    }

    @Test("SIGINT kills the running children, leaves no temporary files, and keeps the campaign directory")
    func interrupt() throws {
        let sandbox = try Sandbox()
        let tmp = try Self.temporaryDirectory(in: sandbox)
        let campaigns = sandbox.path("mmulab-campaigns")
        let started = try sandbox.start(
            ["campaign", "munmap-race", "--seeds", "1..4", "--jobs", "2", "--duration", "30", "--plugin-directory", buildDirectory],
            environment: ["TMPDIR": tmp])
        let deadline = Date().addingTimeInterval(20)
        while !Self.leftovers(in: campaigns).contains(where: { $0.hasSuffix(".log") }) && Date() < deadline { usleep(20_000) }
        #expect(Self.leftovers(in: campaigns).contains { $0.hasSuffix(".log") }, "no child started")
        usleep(200_000)
        started.process.interrupt()
        let outcome = sandbox.finish(started, limit: 15)
        #expect(started.process.terminationReason == .uncaughtSignal && outcome.status == SIGINT, "\(outcome.transcript)")
        #expect(outcome.stdout.contains("interrupted"), "\(outcome.transcript)")
        #expect(Self.leftovers(in: tmp).isEmpty, "left in TMPDIR: \(Self.leftovers(in: tmp))")
        #expect(Self.processes(mentioning: campaigns).isEmpty, "children still running: \(Self.processes(mentioning: campaigns))")
        #expect(Self.leftovers(in: campaigns).contains { $0.hasSuffix("plan.json") }, "the campaign directory is kept")
        #expect(Self.leftovers(in: campaigns).contains("bugs.sqlite"), "the interrupted campaign is recorded")
    }

    /// The ids of the processes whose command line mentions `text`.
    static func processes(mentioning text: String) -> [String] {
        let ids = (try? FileManager.default.contentsOfDirectory(atPath: "/proc")) ?? []
        return ids.filter { id in
            guard id.allSatisfy(\.isNumber), let data = FileManager.default.contents(atPath: "/proc/\(id)/cmdline") else { return false }
            return String(decoding: data.map { $0 == 0 ? 32 : $0 }, as: UTF8.self).contains(text)
        }
    }
}
