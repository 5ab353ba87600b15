import Foundation
import ReclaimLab
import Testing

/// The HTML report: escaped, self-contained, bugs first with the totals per
/// invariant and the replay command, its charts (watermarks, a log scale),
/// thousands separators, the scenario as it ran, and a note rather than a
/// broken chart when there is nothing to draw.
@Suite("HTML report")
struct HTMLReportTests {
    static let stale = Finding(
        invariant: .staleTranslation, detail: "device read <script>alert(1)</script> & more",
        place: Finding.Place(space: "vm", mapping: "guest", page: 3, address: 0x7f00_3000, frame: "frame 17"),
        trail: ["0.10 s map <frame 17>", "0.20 s vmscan evict", "0.30 s device read"], seconds: 0.3, actor: "guest-0",
        deviceTranslation: "pfn#9 (generation 4 now)")

    static func result(timeline: [TimelineSample], latencies: [CallbackLatency], elapsed: Double = 2.0) -> RunResult {
        let lost = Finding(invariant: .lostWrite, detail: "page 9 'quoted' \"twice\"", seconds: 1.25)
        var result = RunResult(
            scenario: "guest & peers", seed: 42, elapsedSeconds: elapsed, cpuReads: 1_000_000, cpuWrites: 2, deviceReads: 3,
            deviceWrites: 4, checkedReads: 5, failedAccesses: 6, findings: [stale, lost],
            findingsTotal: 1_234_567, machineStatistics: [("faults", 9_876), ("never", 0)],
            pluginStatistics: [("kvm#0", [(name: "tlb <hits>", value: 11)])])
        result.bugs = [
            Bug(
                key: BugKey(invariant: .staleTranslation, kind: "stale translation", instance: "kvm#0", path: "device access", event: "vmscan"),
                count: 1_234_000, firstSeenSeconds: 0.3, first: stale, examples: [stale],
                symptoms: [(invariant: .lostWrite, count: 500)], symptomExamples: [lost]),
            Bug(key: BugKey(invariant: .lostWrite, path: "CPU read"), count: 67, firstSeenSeconds: 1.25, first: lost),
        ]
        result.findingsByInvariant = [(.staleTranslation, 1_234_000), (.lostWrite, 567), (.pinLeak, 0)]
        result.replay = ReplayCommand(
            scenario: "guest & peers", seed: 42, seconds: 2, injections: [.freeBeforeInvalidate], plugins: ["mirror-broken"], pluginOptions: "bug=stale")
        result.scenarioYAML = "name: \"guest & peers\"\n"
        result.memory = MemorySummary(frames: 4_096, nodes: 2, minFree: 8, lowFree: 16, highFree: 32)
        result.actors = [ActorActivity(name: "guest-0", role: .workload, successes: 12_345, steps: 12_345)]
        result.timeline = timeline
        result.latencies = latencies
        return result
    }

    static let timeline = [
        TimelineSample(seconds: 0.5, freeFrames: 300, operations: 100, invalidations: ["vmscan": 10, "migrate": 0, "ksm": 0]),
        TimelineSample(seconds: 1.0, freeFrames: 120, operations: 200, invalidations: ["vmscan": 30_000, "migrate": 4, "ksm": 0]),
        TimelineSample(seconds: 1.5, freeFrames: 180, operations: 300, invalidations: ["vmscan": 35_000, "migrate": 9]),
    ]

    static let latencies = [
        CallbackLatency(
            plugin: "kvm#0", callback: "invalidate_range_start", count: 40, p50: 800, p90: 2_000, p99: 12_345, p999: 40_000, max: 3_500_000),
        CallbackLatency(plugin: "gpu#0", callback: "clear_young", count: 7, p50: 0, p90: 0, p99: 0, p999: 0, max: 0),
    ]

    /// A number that is not one: NaN or infinity, as Swift or C would print it.
    static func hasNonNumber(_ html: String) throws -> Bool {
        try html.contains(Regex("(?i)\\b(nan|inf|infinity)\\b"))
    }

    @Test func bugsComeFirstWithTheTotalsAndTheReplayCommand() throws {
        let html = HTMLReport.render(Self.result(timeline: Self.timeline, latencies: Self.latencies))
        // The verdict, the totals per invariant (with separators) and the exact replay command, before the bugs.
        #expect(html.contains("1,234,567 findings in 2 bugs"))
        let invariants = try #require(html.range(of: "<table id=\"invariants\">"))
        #expect(html.contains("<td>stale translation</td><td class=\"n\">1,234,000</td>") && html.contains("<td>pin leak</td><td class=\"n\">0</td>"))
        #expect(html.contains(
            "mmulab run &#39;guest &amp; peers&#39; --seed 42 --duration 2s --inject free-before-invalidate --plugin mirror-broken --plugin-options bug=stale"))
        let list = try #require(html.range(of: "<ol class=\"bugs\" id=\"bugs\">"))
        #expect(invariants.lowerBound < list.lowerBound)
        #expect(html.components(separatedBy: "<li class=\"bug\">").count - 1 == 2)
        #expect(html.contains("stale translation: kvm#0 device access after vmscan"))
        #expect(html.contains("1,234,000 times, first seen at 0.300 s; symptoms of the same accesses: lost write 500"))
        // The first occurrence in full, escaped, its trail in order; the rest folded.
        #expect(html.contains("device read &lt;script&gt;alert(1)&lt;/script&gt; &amp; more"))
        #expect(!html.contains("<script"))
        #expect(html.contains("page 9 &#39;quoted&#39; &quot;twice&quot;"))
        #expect(html.contains("<code>0x7f003000</code>") && html.contains("the primary maps <code>frame 17</code> now"))
        #expect(html.contains("the device used <code>pfn#9 (generation 4 now)</code>") && html.contains("by <code>guest-0</code>"))
        let trail = try #require(html.range(of: "0.10 s map &lt;frame 17&gt;"))
        let last = try #require(html.range(of: "0.30 s device read"))
        #expect(trail.lowerBound < last.lowerBound)
        #expect(html.contains("<summary>1 more occurrence</summary>") && html.contains("<summary>symptoms seen by the oracle</summary>"))
        #expect(html.contains("<h1>guest &amp; peers</h1>"))
    }

    @Test func chartsDrawWatermarksALogScaleAndTotals() throws {
        let html = HTMLReport.render(Self.result(timeline: Self.timeline, latencies: Self.latencies))
        // Three charts: free frames, invalidation rates, p99 bars.
        #expect(html.components(separatedBy: "<svg").count - 1 == 3)
        #expect(html.contains(">all 4,096 frames</text>") && html.contains(">high watermark 64 (2 nodes)</text>"))
        #expect(html.contains(">low watermark 32</text>") && html.contains(">min watermark 16</text>"))
        #expect(html.contains("Invalidations per second, by event (log scale)"))
        // Decades on the rate axis, and each event's total in the legend and the table.
        #expect(html.contains(">10k</text>") && html.contains(">1</text>"))
        #expect(html.contains(">vmscan (35,000)</text>") && html.contains(">migrate (9)</text>"))
        #expect(html.contains("<td>vmscan</td><td class=\"n\">35,000</td>"))
        #expect(!html.contains("ksm"), "an event that never occurs is left out")
        #expect(html.contains("12.3 µs") && html.contains("3.50 ms") && html.contains("800 ns"))
        #expect(html.contains("0.500 M/s") && html.contains("<td>CPU reads</td><td class=\"n\">1,000,000</td>"))
        #expect(html.contains("<td>faults</td><td class=\"n\">9,876</td>") && !html.contains("never"))
        #expect(html.contains("tlb &lt;hits&gt;"))
        #expect(html.contains("<pre class=\"yaml\">name: &quot;guest &amp; peers&quot;"))
        #expect(try !Self.hasNonNumber(html))
        #expect(!html.contains("src=") && !html.contains("href=") && !html.contains("url(") && !html.contains("@import"))
    }

    @Test func anEmptyRunGetsNotesInsteadOfCharts() throws {
        var result = Self.result(timeline: [], latencies: [], elapsed: 0)
        result.findings = []
        result.bugs = []
        result.findingsTotal = 0
        let html = HTMLReport.render(result)
        #expect(!html.contains("<svg"))
        #expect(html.contains("No samples: the run recorded no timeline."))
        #expect(html.contains("No samples: rates need at least two timeline samples."))
        #expect(html.contains("No samples: no plugin callback was timed."))
        #expect(html.contains(">clean</span>") && html.contains("None: every enabled check held."))
        #expect(html.contains("– (no elapsed time)"))
        #expect(try !Self.hasNonNumber(html))

        // Nothing checked: SKIP, never the word clean.
        result.checkedReads = 0
        let skipped = HTMLReport.render(result)
        #expect(skipped.contains(">SKIP: no read checked</span>") && !skipped.contains(">clean</span>"))
        #expect(skipped.contains("no read was checked: the run proves nothing (SKIP)"))

        // One sample, or samples at one instant: a chart of free frames, no rates, still nothing that is not a number.
        let instant = TimelineSample(seconds: 1, freeFrames: 0, operations: 0, invalidations: ["vmscan": 3])
        let flat = HTMLReport.render(Self.result(timeline: [instant, instant], latencies: [], elapsed: .nan))
        #expect(flat.components(separatedBy: "<svg").count - 1 == 1)
        #expect(flat.contains("no two timeline samples are apart in time"))
        #expect(try !Self.hasNonNumber(flat))
    }

    @Test func writeReplacesTheFileAndLeavesNoPartialFile() throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("mmulab-html-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        let path = directory.appendingPathComponent("report.html").path
        try "old".write(toFile: path, atomically: false, encoding: .utf8)
        let destination = try ReportDestination.checked(path, option: "--report")
        let result = Self.result(timeline: Self.timeline, latencies: Self.latencies)
        try HTMLReport.write(result, to: destination)
        #expect(try String(contentsOfFile: path, encoding: .utf8) == HTMLReport.render(result))
        #expect(try FileManager.default.contentsOfDirectory(atPath: directory.path) == ["report.html"])
    }
}
