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

    @Option(parsing: .unconditional, help: "How long to run: seconds, or 500ms, 10s, 2m.", transform: ArgumentValues.duration)
    var duration: Double = 30

    @OptionGroup var seedOption: SeedOption

    @OptionGroup var bundledPlugins: PluginDirectoryOption

    @OptionGroup var reports: RunReportOptions

    func run() throws {
        var session = RunSession(scenarioArgument: "reclaim-storm")
        session.banner = "mmulab demo: reclaim-storm with the gpu, rdma and kvm plugins for \(fixed(duration)) s"
        session.options.seed = seedOption.seed
        session.options.seconds = duration
        session.options.pluginDirectory = bundledPlugins.pluginDirectory
        session.jsonPath = reports.json
        session.reportPath = reports.report
        try session.run()
    }
}
