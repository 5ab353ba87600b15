import ArgumentParser
import ReclaimLab

/// The README's main command: the reclaim storm with the three bundled
/// plugins, then the summary.
struct DemoCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "demo",
        abstract: "Stress-run reclaim-storm against the GPU, RDMA and KVM plugins and report what the oracle found.",
        discussion: """
            The built-in reclaim-storm scenario: memory oversubscribed 2x, kswapd, NUMA migration \
            and KSM running, a KVM guest, an RDMA NIC with on-demand paging, a GPU with shared \
            virtual memory and CPU threads all reading and writing, every read checked. The same \
            as `mmulab run reclaim-storm --duration 30`.

            Exit status: 0 clean, 1 findings, 2 bad input.
            """
    )

    @Option(help: "Seconds to run.")
    var duration: Double = 30

    @Option(help: "Seed (a finding's seed replays it).")
    var seed: UInt64?

    @Option(help: "Directory of the bundled plugins (default: beside mmulab).")
    var pluginDirectory: String?

    @Option(help: ArgumentHelp("Write the result as JSON to this file.", valueName: "file"))
    var json: String?

    @Option(help: ArgumentHelp("Write a self-contained HTML report to this file.", valueName: "file"))
    var report: String?

    func validate() throws {
        guard duration > 0, duration <= 86_400 else { throw ValidationError("--duration must be in (0, 86400] seconds") }
        try RunSession.validateReportPaths(json: json, report: report)
    }

    func run() throws {
        var session = RunSession(scenarioArgument: "reclaim-storm")
        session.banner = "mmulab demo: reclaim-storm with the gpu, rdma and kvm plugins for \(fixed(duration)) s"
        session.options.seed = seed
        session.options.seconds = duration
        session.options.pluginDirectory = pluginDirectory
        session.jsonPath = json
        session.reportPath = report
        session.replayFlags = ["--duration", formatSeconds(duration)] + (pluginDirectory.map { ["--plugin-directory", $0] } ?? [])
        try session.run()
    }
}
