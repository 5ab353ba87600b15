import Foundation
import Testing

/// Findings as the built `mmulab` reports them: bugs, not raw findings, the
/// root cause first, the exact replay command, context violations and
/// contract breaks that name the plugin, and SKIP for a run that checked
/// nothing.
@Suite("mmulab run: findings")
struct FindingsCommandTests {
    static var misbehaving: String { buildDirectory + "/libmmulab-fixture-misbehaving.so" }

    /// A scenario whose reads are never checked: the misbehaving fixture,
    /// with its default options, fails every access cleanly (and the OOM
    /// kill comes after the run's end), so a run of it is a SKIP.
    static let nothingChecked = """
        name: nothing-checked
        length: 500ms
        machine: { frames: 256, swap-slots: 256 }
        spaces: [ { name: app, mappings: [ { name: heap, pages: 16 } ] } ]
        plugins: [ { plugin: \(misbehaving), name: dead, bindings: [ { space: app, mapping: heap } ] } ]
        workloads: [ { name: reader, actor: dead, space: app, mapping: heap, writes: 0 } ]
        pressure:
          oom-kill: { space: app, after-ms: 60000 }
        """

    /// The bugs of a run's JSON report.
    static func bugs(_ json: [String: Any]) throws -> [[String: Any]] {
        try #require(json["bugs"] as? [[String: Any]], "no bugs array")
    }

    static func total(_ bug: [String: Any]) -> Int {
        (bug["count"] as? Int ?? 0) + ((bug["symptoms"] as? [String: Int])?.values.reduce(0, +) ?? 0)
    }

    @Test("a broken plugin's storm of findings is a handful of bugs, the stale translation first")
    func aBrokenPluginsFindingsAreAHandfulOfBugs() throws {
        let sandbox = try Sandbox()
        let report = sandbox.path("broken.json")
        let outcome = try sandbox.mmulab([
            "run", "reclaim-storm", "--duration", "2", "--seed", "3", "--plugin", "mirror-broken", "--plugin-options", "bug=stale",
            "--plugin-directory", buildDirectory, "--json", report,
        ])
        #expect(outcome.status == 1, "\(outcome.transcript)")
        let json = try jsonObject(at: report)
        let bugs = try Self.bugs(json)
        let total = try #require(json["findings_total"] as? Int)
        let byInvariant = try #require(json["findings_by_invariant"] as? [String: Int])
        #expect(byInvariant.values.reduce(0, +) == total, "the totals per invariant add up: \(byInvariant)")
        #expect(total >= 100, "a storm: \(total) findings")
        // A handful: the broken device's stale translations and uses after free, one bug per event that
        // preceded them (vmscan, migrate, ksm, cowBreak, none), and a few symptoms no root cause explains.
        #expect(!bugs.isEmpty && bugs.count <= 16, "a handful of bugs, not \(bugs.count): \(bugs.map { $0["title"] ?? "" })")
        let others = bugs.filter { $0["plugin_instance"] as? String != "mirror-broken#0" }
        #expect(others.count <= 4, "bugs not about the broken device: \(others.map { $0["title"] ?? "" })")
        // The root cause is the bug with most findings, and its symptoms are attached to it.
        let biggest = try #require(bugs.max { Self.total($0) < Self.total($1) })
        #expect(["stale translation", "use after free"].contains(biggest["invariant"] as? String), "\(biggest["title"] ?? "")")
        #expect(biggest["plugin_instance"] as? String == "mirror-broken#0", "\(biggest["title"] ?? "")")
        #expect(!((biggest["symptoms"] as? [String: Int]) ?? [:]).isEmpty, "the oracle's symptoms are attached to it")
        // The broken device's root causes (one per event that preceded its bad accesses; how the storm
        // splits among events depends on the timing) hold most findings, with their symptoms.
        let rooted = bugs.filter { $0["plugin_instance"] as? String == "mirror-broken#0" }.map(Self.total).reduce(0, +)
        #expect(rooted * 2 > total, "the broken device's bugs hold most findings: \(rooted) of \(total)")
        // Every root bug names the broken instance; each has its count, first-seen time and first occurrence with evidence.
        for bug in bugs {
            let title = bug["title"] as? String ?? ""
            #expect((bug["count"] as? Int ?? 0) >= 1, "\(title)")
            let seen = try #require(bug["first_seen_seconds"] as? Double, "\(title)")
            #expect(seen >= 0 && seen <= 4, "\(title): first seen at \(seen) s")
            let first = try #require(bug["first"] as? [String: Any], "\(title)")
            // The primary's own findings (they have a kind; the oracle's symptoms filed alone have none).
            guard ["stale translation", "use after free"].contains(bug["invariant"] as? String), bug["kind"] is String else { continue }
            #expect(bug["plugin_instance"] as? String == "mirror-broken#0", "\(title)")
            // A set_dirty on a freed frame (the stale device reports its pages dirty at detach) is a bad call,
            // not an access; its page is named only when the instance's bindings over it are in one space
            // (here they are in three).
            let call = bug["path"] as? String == "set_dirty"
            #expect((call || first["place"] != nil) && first["device_translation"] != nil && first["actor"] != nil && first["seconds"] != nil,
                    "\(title): \(first)")
            #expect((first["trail"] as? [String])?.last?.contains(call ? "the bad call" : "the bad access") == true, "\(title): \(first)")
        }
        // Older readers (the campaign) still find findings_total and a first finding.
        #expect((json["findings"] as? [[String: Any]])?.count == bugs.count)
        // The terminal lists the bugs, the totals and the replay command.
        #expect(outcome.stdout.contains("by invariant:") && outcome.stdout.contains("  #1 "), "\(outcome.transcript)")
        #expect(outcome.stdout.contains("replay    mmulab run reclaim-storm --seed 3 --duration 2s --plugin-directory "), "\(outcome.transcript)")
    }

    @Test("the replay command printed, in the JSON and in the HTML replays the run: the same bugs")
    func theReplayCommandReplays() throws {
        let sandbox = try Sandbox()
        let first = sandbox.path("first.json")
        let html = sandbox.path("first.html")
        let outcome = try sandbox.mmulab([
            "run", "munmap-race", "--seed", "11", "--duration", "700ms", "--plugin", Self.misbehaving, "--plugin-options", "retry=1,confess=1",
            "--inject", "skip-range-end", "--plugin-directory", buildDirectory, "--json", first, "--report", html,
        ])
        #expect(outcome.status == 1, "\(outcome.transcript)")
        let json = try jsonObject(at: first)
        let replay = try #require(json["replay"] as? [String: Any])
        let command = try #require(replay["command"] as? String)
        let arguments = try #require(replay["arguments"] as? [String])
        #expect(arguments == [
            "run", "munmap-race", "--seed", "11", "--duration", "700ms", "--plugin-directory", buildDirectory, "--inject", "skip-range-end",
            "--plugin", Self.misbehaving, "--plugin-options", "retry=1,confess=1",
        ])
        #expect(outcome.stdout.contains("replay    \(command)"), "\(outcome.transcript)")
        let page = try String(contentsOfFile: html, encoding: .utf8)
        #expect(page.contains(command.replacingOccurrences(of: "'", with: "&#39;")), "the HTML carries the same command")

        let again = sandbox.path("again.json")
        let replayed = try sandbox.mmulab(arguments + ["--json", again])
        #expect(replayed.status == 1, "\(replayed.transcript)")
        let titles = Set(try Self.bugs(json).compactMap { $0["title"] as? String })
        let replayedTitles = Set(try Self.bugs(jsonObject(at: again)).compactMap { $0["title"] as? String })
        #expect(titles == replayedTitles, "replayed: \(replayedTitles), first: \(titles)")
        // What the misbehaving plugin and the injection cause, each as itself.
        #expect(titles.contains { $0.hasPrefix("retry from a blockable start: libmmulab-fixture-misbehaving#0 ") }, "\(titles)")
        #expect(titles.contains { $0.hasPrefix("misbehaviour reported by a plugin (answered retry to a blockable start of [N, N)): ") }, "\(titles)")
        #expect(titles.contains { $0.hasPrefix("unpaired start/end: ") }, "\(titles)")
    }

    @Test("retry from a blockable start is reported as that, not as unpaired start/end")
    func retryFromABlockableStartIsItself() throws {
        let sandbox = try Sandbox()
        let report = sandbox.path("retry.json")
        let outcome = try sandbox.mmulab([
            "run", "munmap-race", "--duration", "500ms", "--plugin", Self.misbehaving, "--plugin-options", "retry=1", "--json", report,
        ])
        #expect(outcome.status == 1, "\(outcome.transcript)")
        let byInvariant = try #require(try jsonObject(at: report)["findings_by_invariant"] as? [String: Int])
        #expect((byInvariant["retry from a blockable start"] ?? 0) > 0 && byInvariant["unpaired start/end"] == 0, "\(byInvariant)")
        #expect(byInvariant["misbehaviour reported by a plugin"] == 0, "it did not confess")
    }

    @Test("a context violation names the plugin instance, its callback and the lock")
    func aContextViolationNamesThePluginTheCallbackAndTheLock() throws {
        let sandbox = try Sandbox()
        // An OOM kill early in the run: the reaper's non-blockable invalidations
        // reach the plugin, which takes its sleeping lock in every start.
        let file = try sandbox.write("oom.yaml", """
            name: early-oom
            length: 1s
            machine: { frames: 256, swap-slots: 256 }
            spaces:
              - { name: victim, mappings: [ { name: heap, pages: 32 } ] }
              - { name: other, mappings: [ { name: heap, pages: 32 } ] }
            plugins: [ { plugin: \(Self.misbehaving), name: locky, options: "lock=1", bindings: [ { space: victim, mapping: heap } ] } ]
            workloads:
              - { name: victim-cpu, actor: cpu, space: victim, mapping: heap }
              - { name: other-cpu, actor: cpu, space: other, mapping: heap }
            pressure:
              oom-kill: { space: victim, after-ms: 20 }
            """)
        let report = sandbox.path("sleep.json")
        let outcome = try sandbox.mmulab(["run", file, "--json", report])
        #expect(outcome.status == 1, "\(outcome.transcript)")
        let bug = try #require(try Self.bugs(jsonObject(at: report)).first { $0["invariant"] as? String == "context violation" }, "\(outcome.transcript)")
        #expect(bug["plugin_instance"] as? String == "locky#0" && bug["path"] as? String == "invalidate_range_start", "\(bug)")
        #expect((bug["kind"] as? String)?.contains("sleeping lock acquire on 'misbehaving device lock'") == true, "\(bug)")
        #expect((bug["event"] as? String)?.contains("oomReap") == true, "\(bug)")
        #expect(outcome.stdout.contains("context violation (sleeping lock acquire on 'misbehaving device lock'): locky#0 invalidate_range_start"),
                "\(outcome.transcript)")
    }

    @Test("a run that checked no read is SKIP: exit 0, never the word clean, a warning per idle actor")
    func nothingCheckedIsASkip() throws {
        let sandbox = try Sandbox()
        let file = try sandbox.write("nothing.yaml", Self.nothingChecked)
        let report = sandbox.path("skip.json")
        let outcome = try sandbox.mmulab(["run", file, "--json", report])
        #expect(outcome.status == 0, "\(outcome.transcript)")
        let saysClean = try outcome.stdout.lowercased().contains(Regex("\\bclean\\b"))
        #expect(outcome.stdout.contains("SKIP") && !saysClean, "\(outcome.transcript)")
        #expect(outcome.stdout.contains("WARNING   workload thread 'reader-0' never succeeded"), "\(outcome.transcript)")
        #expect(outcome.stdout.contains("WARNING   actor 'oom-kill app' never succeeded"), "an OOM kill after the run's end: \(outcome.transcript)")
        let json = try jsonObject(at: report)
        #expect(json["verdict"] as? String == "skip" && json["clean"] as? Bool == false, "\(json)")
        #expect((json["warnings"] as? [String])?.count == 3, "\(json["warnings"] ?? "")")
    }

    @Test("--plugin-options without --plugin is refused before anything runs")
    func pluginOptionsNeedAPlugin() throws {
        let outcome = try Sandbox().mmulab(["run", "munmap-race", "--plugin-options", "bug=stale"])
        expectBadInput(outcome, mentions: ["--plugin-options", "no --plugin"])
        #expect(!outcome.stdout.contains("scenario "), "it ran: \(outcome.transcript)")
    }
}
