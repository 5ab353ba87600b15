import Foundation
import ReclaimLab
import Testing

/// The HTML report: escaped, self-contained, with its charts, and with a
/// note rather than a broken chart when there is nothing to draw.
@Suite("HTML report")
struct HTMLReportTests {
    static func result(timeline: [TimelineSample], latencies: [CallbackLatency], elapsed: Double = 2.0) -> RunResult {
        var result = RunResult(
            scenario: "guest & peers", seed: 42, elapsedSeconds: elapsed, cpuReads: 1_000_000, cpuWrites: 2, deviceReads: 3,
            deviceWrites: 4, checkedReads: 5, failedAccesses: 6,
            findings: [
                Finding(
                    invariant: .staleTranslation, detail: "device read <script>alert(1)</script> & more",
                    place: Finding.Place(space: "vm", mapping: "guest", page: 3, address: 0x7f00_3000, frame: "frame 17"),
                    trail: ["0.10 s map <frame 17>", "0.20 s vmscan evict", "0.30 s device read"]),
                Finding(invariant: .lostWrite, detail: "page 9 'quoted' \"twice\""),
            ],
            findingsTotal: 57, machineStatistics: [("faults", 9), ("never", 0)],
            pluginStatistics: [("kvm#0", [(name: "tlb <hits>", value: 11)])])
        result.timeline = timeline
        result.latencies = latencies
        return result
    }

    static let timeline = [
        TimelineSample(seconds: 0.5, freeFrames: 300, operations: 100, invalidations: ["vmscan": 10, "migrate": 0, "ksm": 0]),
        TimelineSample(seconds: 1.0, freeFrames: 120, operations: 200, invalidations: ["vmscan": 30, "migrate": 4, "ksm": 0]),
        TimelineSample(seconds: 1.5, freeFrames: 180, operations: 300, invalidations: ["vmscan": 35, "migrate": 9]),
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

    @Test func escapesTheRunsTextAndDrawsBothChartsAndTheLatencies() throws {
        let html = HTMLReport.render(Self.result(timeline: Self.timeline, latencies: Self.latencies))
        #expect(html.contains("device read &lt;script&gt;alert(1)&lt;/script&gt; &amp; more"))
        #expect(!html.contains("<script"))
        #expect(html.contains("page 9 &#39;quoted&#39; &quot;twice&quot;"))
        #expect(html.contains("<h1>guest &amp; peers</h1>"))
        #expect(html.contains("mmulab run &#39;guest &amp; peers&#39; --seed 42"))
        #expect(html.contains("57 findings"))
        #expect(html.contains("55 more findings not shown (57 in all)"))
        // The place and the trail, in order.
        #expect(html.contains("<code>0x7f003000</code>") && html.contains("frame <code>frame 17</code>"))
        let trail = try #require(html.range(of: "0.10 s map &lt;frame 17&gt;"))
        let last = try #require(html.range(of: "0.30 s device read"))
        #expect(trail.lowerBound < last.lowerBound)
        // Three charts: free frames, invalidation rates, p99 bars.
        #expect(html.components(separatedBy: "<svg").count - 1 == 3)
        #expect(html.contains(">vmscan</text>") && html.contains(">migrate</text>"))
        #expect(!html.contains("ksm"), "an event that never occurs is left out")
        #expect(html.contains("12.3 µs") && html.contains("3.50 ms") && html.contains("800 ns"))
        #expect(html.contains("0.500 M/s"))
        #expect(html.contains("<td>faults</td>") && !html.contains("never"))
        #expect(html.contains("tlb &lt;hits&gt;"))
        #expect(try !Self.hasNonNumber(html))
        #expect(!html.contains("src=") && !html.contains("href=") && !html.contains("url(") && !html.contains("@import"))
    }

    @Test func anEmptyRunGetsNotesInsteadOfCharts() throws {
        var result = Self.result(timeline: [], latencies: [], elapsed: 0)
        result.findings = []
        result.findingsTotal = 0
        let html = HTMLReport.render(result)
        #expect(!html.contains("<svg"))
        #expect(html.contains("No samples: the run recorded no timeline."))
        #expect(html.contains("No samples: rates need at least two timeline samples."))
        #expect(html.contains("No samples: no plugin callback was timed."))
        #expect(html.contains(">clean</span>"))
        #expect(html.contains("– (no elapsed time)"))
        #expect(try !Self.hasNonNumber(html))

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
