import Foundation
import ReclaimLab
import Testing
import TestSupport
import VirtualMemory

/// Scenarios run end to end: clean with the bundled plugins, and a
/// deliberately broken primary found and named.
@Suite("Scenario runs")
struct RunnerTests {
    static func scenario(_ yaml: String) throws -> Scenario { try ScenarioReader.read(yaml: yaml, file: "test.yaml") }

    static let guestAndPeers = """
        name: guest-and-peers
        length: { operations: 30000 }
        machine: { frames: 384, nodes: 2, swap-slots: 4096 }
        spaces:
          - name: vm
            mappings: [ { name: guest, pages: 256, mergeable: true } ]
          - name: app
            mappings: [ { name: heap, pages: 192 }, { name: data, kind: file, pages: 32 } ]
        plugins:
          - { plugin: kvm, bindings: [ { space: vm, mapping: guest, device-address: 0x100000000 } ] }
          - { plugin: rdma, name: nic, options: "dma-us=20", bindings: [ { space: app, mapping: heap } ] }
        workloads:
          - { name: guest, actor: kvm, space: vm, mapping: guest, threads: 2, pattern: zipfian, writes: 0.3 }
          - { name: cpu, actor: cpu, space: app, mapping: heap }
          - { name: peer, actor: nic, space: app, mapping: heap }
          - { name: files, actor: cpu, space: app, mapping: data, pattern: sequential }
        pressure:
          migration-rate: 2000
          ksm: { scans-per-second: 50, duplicates: 0.1 }
          balloon-pages: 96
          churn: [ { space: app, mapping: heap, rate: 50 } ]
          fork: [ { space: app, rate: 50 } ]
        """

    @Test func aStormWithTwoPluginsRunsClean() throws {
        var options = RunOptions()
        options.seed = testSeed
        let result = try ScenarioRunner.run(try Self.scenario(Self.guestAndPeers), options: options)
        #expect(result.findings.isEmpty, "seed \(testSeed): \(result.findings.prefix(5))")
        #expect(result.operations >= 30_000)
        #expect(result.deviceReads > 0 && result.deviceWrites > 0 && result.cpuWrites > 0 && result.checkedReads > 0)
        let evicted = result.machineStatistics.first { $0.0 == "evicted anonymous" }?.1 ?? 0
        #expect(evicted > 0, "memory was tight enough to reclaim")
        #expect(result.pluginStatistics.map(\.0) == ["kvm#0", "nic#0"])
        // The report's material: a timeline from start to end, and latencies measured per plugin.
        #expect(result.timeline.count >= 2 && result.timeline.first!.seconds < result.timeline.last!.seconds)
        #expect((result.timeline.last?.invalidations["vmscan"] ?? 0) > 0, "reclaim's invalidations counted by event")
        #expect(result.latencies.contains { $0.plugin == "kvm#0" && $0.callback == "invalidate_range_start" && $0.count > 0 && $0.p50 <= $0.max })
        #expect(result.latencies.contains { $0.plugin == "nic#0" && $0.count > 0 })
    }

    /// The primary frees pages before it invalidates the secondaries (the
    /// backwards order of docs/CONTRACT.md, rule 5): the run must find it
    /// and name it.
    /// The window is a race, so a run may miss it on a loaded machine: up
    /// to five runs (seeds in sequence), and the first that finds it must
    /// name only the invariants that order breaks.
    @Test func freeingBeforeInvalidatingIsFoundAndNamed() throws {
        var options = RunOptions()
        options.faults = .freeBeforeInvalidate
        var found: RunResult? = nil
        for attempt in 0..<5 where found == nil {
            options.seed = testSeed &+ UInt64(attempt)
            let result = try ScenarioRunner.run(try Self.scenario(Self.guestAndPeers), options: options)
            if !result.findings.isEmpty { found = result }
        }
        let result = try #require(found, "seeds \(testSeed)...+4: the broken order went unnoticed in five runs")
        let named = Set(result.findings.map(\.invariant))
        #expect(named.isSubset(of: [.useAfterFree, .staleTranslation, .crossSpaceLeak, .lostWrite, .writeThroughReadOnly]), "\(named)")
    }

    @Test func aScenarioWhosePluginDoesNotLoadFailsBeforeRunning() throws {
        let broken = try Self.scenario("""
            name: broken
            spaces: [ { name: a, mappings: [ { name: m, pages: 8 } ] } ]
            plugins: [ { plugin: /nonexistent/libmmulab-plugin-x.so, name: x, bindings: [ { space: a, mapping: m } ] } ]
            workloads: [ { name: w, actor: x, space: a, mapping: m } ]
            """)
        #expect(throws: ScenarioRunner.SetupFailure.self) { try ScenarioRunner.run(broken) }
    }
}

@Suite("Run reports")
struct ReportTests {
    @Test func theJSONReportIsValidJSONWithTheFindings() throws {
        var result = RunResult(
            scenario: "s \"quoted\"", seed: 7, elapsedSeconds: 1.5, cpuReads: 1, cpuWrites: 2, deviceReads: 3, deviceWrites: 4,
            checkedReads: 5, failedAccesses: 0,
            findings: [
                Finding(invariant: .lostWrite, detail: "page 3\nline two"),
                Finding(
                    invariant: .staleTranslation, detail: "d",
                    place: .init(space: "app", mapping: "heap", page: 4, address: 0x4000, frame: "pfn#9"), trail: ["t=1 µs start", "t=2 µs end"]),
            ],
            findingsTotal: 2, machineStatistics: [("faults", 9)], pluginStatistics: [("kvm#0", [(name: "tlb hits", value: 11)])])
        result.latencies = [CallbackLatency(plugin: "kvm#0", callback: "clear_young", count: 3, p50: 10, p90: 20, p99: 30, p999: 40, max: 50)]
        result.timeline = [TimelineSample(seconds: 0.25, freeFrames: 12, operations: 100, invalidations: ["vmscan": 5])]
        result.bugs = [
            Bug(
                key: BugKey(invariant: .staleTranslation, kind: "use after free", instance: "gpu#0", path: "device access", event: "vmscan"),
                count: 3, firstSeenSeconds: 0.125, first: result.findings[1], examples: [result.findings[1]],
                symptoms: [(invariant: .lostWrite, count: 2)], symptomExamples: [result.findings[0]]),
        ]
        result.findingsByInvariant = [(.staleTranslation, 3), (.lostWrite, 2), (.pinLeak, 0)]
        result.replay = ReplayCommand(
            scenario: "my file.yaml", seed: 7, seconds: 1.5, injections: [.skipRangeEnd], plugins: ["/p/x.so"], pluginOptions: "a=1")
        result.actors = [ActorActivity(name: "cpu-0", role: .workload, successes: 0, steps: 10)]
        let text = JSONReport.render(result)
        let object = try #require(try JSONSerialization.jsonObject(with: Data(text.utf8)) as? [String: Any])
        #expect(object["scenario"] as? String == "s \"quoted\"")
        #expect(object["seed"] as? Int == 7 && object["clean"] as? Bool == false)
        let findings = try #require(object["findings"] as? [[String: Any]])
        #expect(findings.count == 2)
        #expect(findings[0]["invariant"] as? String == "lost write" && findings[0]["detail"] as? String == "page 3\nline two")
        let place = try #require(findings[1]["place"] as? [String: Any])
        #expect(place["page"] as? Int == 4 && place["address"] as? String == "0x4000" && place["frame"] as? String == "pfn#9")
        #expect(findings[1]["trail"] as? [String] == ["t=1 µs start", "t=2 µs end"])
        let latency = try #require((object["callback_latency_ns"] as? [[String: Any]])?.first)
        #expect(latency["callback"] as? String == "clear_young" && latency["p99"] as? Int == 30)
        let sample = try #require((object["timeline"] as? [[String: Any]])?.first)
        #expect((sample["invalidations"] as? [String: Int])?["vmscan"] == 5 && sample["free_frames"] as? Int == 12)
        let plugins = try #require(object["plugins"] as? [String: [String: Int]])
        #expect(plugins["kvm#0"]?["tlb hits"] == 11)
        // Bugs, totals per invariant, the replay command, the actors and their warnings.
        #expect(object["verdict"] as? String == "fail")
        let bug = try #require((object["bugs"] as? [[String: Any]])?.first)
        #expect(bug["title"] as? String == "stale translation (use after free): gpu#0 device access after vmscan")
        #expect(bug["plugin_instance"] as? String == "gpu#0" && bug["event"] as? String == "vmscan" && bug["kind"] as? String == "use after free")
        #expect(bug["count"] as? Int == 3 && bug["first_seen_seconds"] as? Double == 0.125)
        #expect((bug["symptoms"] as? [String: Int])?["lost write"] == 2)
        #expect(((bug["first"] as? [String: Any])?["place"] as? [String: Any])?["frame"] as? String == "pfn#9")
        #expect((bug["examples"] as? [[String: Any]])?.count == 1 && (bug["symptom_examples"] as? [[String: Any]])?.count == 1)
        #expect(object["findings_by_invariant"] as? [String: Int] == ["stale translation": 3, "lost write": 2, "pin leak": 0])
        let replay = try #require(object["replay"] as? [String: Any])
        #expect(
            replay["command"] as? String
                == "mmulab run 'my file.yaml' --seed 7 --duration 1.5s --inject skip-range-end --plugin /p/x.so --plugin-options a=1")
        #expect(
            replay["arguments"] as? [String]
                == ["run", "my file.yaml", "--seed", "7", "--duration", "1.5s", "--inject", "skip-range-end", "--plugin", "/p/x.so", "--plugin-options", "a=1"])
        #expect((object["actors"] as? [[String: Any]])?.first?["idle"] as? Bool == true)
        #expect((object["warnings"] as? [String])?.first?.contains("'cpu-0' never succeeded") == true)
    }
}
