import Foundation
import Testing

/// Issue 18 through the built `mmulab`: a plugin's misuse and leaks are
/// bugs in the run's list, a lock inversion is reported before anything
/// deadlocks, and a plugin crash is an oops with exit status 4 that
/// `campaign` counts as a crash with the oops attached.
@Suite("mmulab run: plugins that are wrong at the boundary")
struct PluginSafetyCommandTests {
    /// A scenario whose only device is fixture plugin `fixture`, bound to a
    /// 16-page heap, with an mprotect flip on it (invalidations under the
    /// mmap lock) and a device workload.
    static func scenario(_ fixture: String, seconds: Double = 1) -> String {
        """
        name: \(fixture)-device
        length: { seconds: \(seconds) }
        machine: { frames: 256, swap-slots: 256 }
        spaces:
          - name: app
            mappings: [ { name: heap, pages: 16 } ]
        plugins:
          - { plugin: \(buildDirectory)/libmmulab-fixture-\(fixture).so, name: dev, bindings: [ { space: app, mapping: heap } ] }
        workloads:
          - { name: poke, actor: dev, space: app, mapping: heap, writes: 0.5 }
        pressure:
          mprotect: [ { space: app, mapping: heap, rate: 50 } ]
        """
    }

    /// Memory oversubscribed twice over, two device threads: the device's
    /// faults reclaim and kswapd invalidates the device.
    static func underReclaim(_ fixture: String) -> String {
        """
        name: \(fixture)-under-reclaim
        length: { seconds: 3 }
        machine: { frames: 192, swap-slots: 2048 }
        spaces:
          - name: app
            mappings: [ { name: heap, pages: 384 } ]
        plugins:
          - { plugin: \(buildDirectory)/libmmulab-fixture-\(fixture).so, name: dev, bindings: [ { space: app, mapping: heap } ] }
        workloads:
          - { name: dma, actor: dev, space: app, mapping: heap, threads: 2, writes: 0.5 }
        """
    }

    static func bugs(_ path: String) throws -> [[String: Any]] {
        try #require(try jsonObject(at: path)["bugs"] as? [[String: Any]])
    }

    @Test("a misused service is a bug naming the plugin, the service and what was wrong; the run goes on to its end")
    func misuseIsABug() throws {
        let sandbox = try Sandbox()
        let file = try sandbox.write("pfn.yaml", Self.scenario("foreign-pfn"))
        let json = sandbox.path("pfn.json")
        let outcome = try sandbox.mmulab(["run", file, "--seed", "1", "--json", json])
        #expect(outcome.status == 1, "\(outcome.transcript)")
        let contract = try Self.bugs(json).filter { $0["invariant"] as? String == "plugin contract violation" }
        let titles = contract.compactMap { $0["title"] as? String }
        for service in ["set_dirty", "mark_accessed", "dma_read", "dma_write", "unpin"] {
            #expect(titles.contains { $0.contains("(\(service): ") && $0.contains("is not a frame of this machine") && $0.hasSuffix("dev#0 access") }, "\(titles)")
        }
        #expect(outcome.stdout.contains("result    FAIL"), "the run reached its summary: \(outcome.transcript)")
    }

    @Test("what a plugin leaves at detach is a bug naming the plugin and the binding; the host removes it")
    func leakIsABug() throws {
        let sandbox = try Sandbox()
        let file = try sandbox.write("leak.yaml", Self.scenario("leak-interval"))
        let json = sandbox.path("leak.json")
        let outcome = try sandbox.mmulab(["run", file, "--seed", "1", "--json", json])
        #expect(outcome.status == 1, "\(outcome.transcript)")
        let bugs = try Self.bugs(json)
        let leak = try #require(bugs.first { $0["invariant"] as? String == "left behind by a plugin" }, "\(bugs.map { $0["title"] ?? "" })")
        #expect(leak["title"] as? String == "left behind by a plugin (interval left registered after detach): dev#0 detach", "\(leak)")
        let detail = (leak["first"] as? [String: Any])?["detail"] as? String ?? ""
        #expect(detail.contains("binding #1: device 0x") && detail.contains("removed by the host"), "\(detail)")
        #expect(bugs.allSatisfy { $0["invariant"] as? String == "left behind by a plugin" }, "nothing else: \(bugs.map { $0["title"] ?? "" })")
    }

    @Test("the classic inversion with reclaim is a possible lock inversion, long before the watchdog; the consistent order is clean")
    func lockInversion() throws {
        let sandbox = try Sandbox()
        let inverted = try sandbox.write("inversion.yaml", Self.underReclaim("lock-inversion"))
        let json = sandbox.path("inversion.json")
        let outcome = try sandbox.mmulab(["run", inverted, "--seed", "2", "--json", json])
        #expect(outcome.status == 1, "\(outcome.transcript)")
        let inversions = try Self.bugs(json).filter { $0["invariant"] as? String == "possible lock inversion" }
        let reclaim = try #require(inversions.first { ($0["kind"] as? String)?.hasPrefix("with reclaim: ") == true }, "\(inversions)")
        // The cycle is named from the edge that closed it: reclaim -> device lock -> reclaim, or, when reclaim's
        // rmap walk (anon_vma held, calling the device's invalidate) was seen first, the longer
        // anon_vma -> device lock -> reclaim -> anon_vma. Both are the fixture's inversion.
        let title = reclaim["title"] as? String ?? ""
        #expect(
            title.hasPrefix("possible lock inversion (with reclaim: ") && title.hasSuffix("): dev#0 lock order")
                && title.contains("'fixture-lock-inversion: device lock' -> 'reclaim'"),
            "\(title)")
        #expect((reclaim["first_seen_seconds"] as? Double ?? 99) < 2, "found at once, not after the 10 s watchdog: \(reclaim)")
        let chains = ((reclaim["first"] as? [String: Any])?["trail"] as? [String]) ?? []
        #expect(chains.contains { $0.hasPrefix("this thread: ") && $0.contains("in dev#0 interval invalidate") }, "\(chains)")
        #expect(chains.contains { $0.hasPrefix("earlier: ") && $0.contains("in dev#0 access") }, "\(chains)")

        let ordered = try sandbox.write("ordered.yaml", Self.underReclaim("lock-ordered"))
        let clean = try sandbox.mmulab(["run", ordered, "--seed", "2"])
        #expect(clean.status == 0 && clean.stdout.contains("result    clean"), "\(clean.transcript)")
    }

    @Test("a NULL dereference in invalidate_range_start: an oops naming the plugin, the callback and the range; exit 4")
    func oops() throws {
        let sandbox = try Sandbox()
        let file = try sandbox.write("null.yaml", Self.scenario("null-deref-start", seconds: 3))
        let json = sandbox.path("null.json")
        let outcome = try sandbox.mmulab(["run", file, "--seed", "5", "--json", json])
        #expect(outcome.status == 4, "\(outcome.transcript)")
        let oops = outcome.stderr
        for text in [
            "==================== mmulab oops ====================",
            "BUG: a plugin crashed the host: SIGSEGV (invalid memory access) at address 0x0 (a NULL pointer dereference)",
            "libmmulab-fixture-null-deref-start.so + 0x", "  in dev#0 (plugin fixture-null-deref-start, ",
            ") invalidate_range_start, range [0x", "last events of the trail, oldest first:", "invalidate start",
            "replay: mmulab run \(file) --seed 5", "exit status 4",
        ] {
            #expect(oops.contains(text), "the oops should say '\(text)'\n\(outcome.transcript)")
        }
        #expect(!FileManager.default.fileExists(atPath: json), "no report is written after an oops")
    }

    @Test("under --schedule the oops names the run's thread that crashed, though every thread runs on one kernel thread")
    func oopsUnderASchedule() throws {
        let sandbox = try Sandbox()
        let file = try sandbox.write("null.yaml", Self.scenario("null-deref-start", seconds: 0.5))
        let outcome = try sandbox.mmulab(["run", file, "--seed", "5", "--schedule", "pct:3"])
        #expect(outcome.status == 4, "\(outcome.transcript)")
        for text in [
            "BUG: a plugin crashed the host: SIGSEGV", ") invalidate_range_start, range [0x",
            "replay: mmulab run \(file) --seed 5 --schedule pct:3",
            // The mprotect actor called into the plugin: its name, not the carrier's ('main').
            "'mprotect app/heap'\n",
        ] {
            #expect(outcome.stderr.contains(text), "the oops should say '\(text)'\n\(outcome.transcript)")
        }
    }

    @Test("campaign counts a plugin oops as a crash, with the oops attached")
    func campaignCountsTheOops() throws {
        let sandbox = try Sandbox()
        let file = try sandbox.write("null.yaml", Self.scenario("null-deref-start", seconds: 3))
        let summary = sandbox.path("campaign.json")
        let outcome = try sandbox.mmulab(["campaign", file, "--seeds", "1..2", "--json", summary])
        #expect(outcome.status == 1, "\(outcome.transcript)")
        #expect(outcome.stdout.contains("crashed (plugin oops, SIGSEGV)"), "\(outcome.transcript)")
        #expect(outcome.stdout.contains("plugin oops: SIGSEGV at NULL in dev#0 invalidate_range_start"), "\(outcome.transcript)")
        let json = try jsonObject(at: summary)
        #expect((json["totals"] as? [String: Any])?["crashed"] as? Int == 2)
        for run in json["runs"] as? [[String: Any]] ?? [] {
            #expect(run["outcome"] as? String == "crashed" && run["plugin_oops"] as? Bool == true && run["signal"] as? String == "SIGSEGV", "\(run)")
            let report = (run["log_excerpt"] as? [String] ?? []).joined(separator: "\n")
            #expect(report.contains("invalidate_range_start, range [0x") && report.contains("exit status 4"), "\(report)")
        }
    }
}
