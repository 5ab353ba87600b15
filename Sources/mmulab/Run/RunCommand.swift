import ArgumentParser
import LabSync
import ReclaimLab
import VirtualMemory

struct RunCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "run",
        abstract: "Run a reclaim scenario against its plugins and report what the oracle found.",
        discussion: """
            The scenario's workloads (CPU and device threads) and pressure (kswapd, a balloon, \
            NUMA and device migration, KSM, munmap churn, mprotect flips, fork, writeback, \
            attach/detach churn, short-lived spaces that exit, an OOM kill) run for its length; \
            every read is checked against the page's tag, and the primary checks every device \
            access. Findings name the invariant (stale translation, use after free, \
            cross-address-space leak, lost write, hot page evicted, pin leak, context violation, \
            unpaired start/end, stuck), the page, the frame, the events that touched the page, \
            and the command that replays the run from its seed.

            --plugin adds your plugin to any scenario: one instance bound to every mapping the \
            scenario's plugins bind, with a device workload on each.

            Exit status: 0 clean, 1 findings, 2 bad input (a malformed scenario, a plugin that \
            does not load, a bad flag).
            """
    )

    @Argument(help: "A scenario file (YAML), or the name of a built-in one (mmulab scenarios list).")
    var scenario: String

    @Option(help: "Seed (replaces the scenario's; a finding's seed replays it).")
    var seed: UInt64?

    @Option(help: "Seconds to run (replaces the scenario's length).")
    var duration: Double?

    @Option(help: ArgumentHelp("Add a plugin (a .so path or a bundled name) to the scenario; repeatable.", valueName: "path"))
    var plugin: [String] = []

    @Option(help: "Options for the plugins --plugin adds.")
    var pluginOptions: String = ""

    @Option(help: "Directory of the bundled plugins (default: beside mmulab).")
    var pluginDirectory: String?

    @Option(help: ArgumentHelp("Write the result as JSON to this file.", valueName: "file"))
    var json: String?

    @Option(help: ArgumentHelp("Write a self-contained HTML report (charts, latencies, findings) to this file.", valueName: "file"))
    var report: String?

    @Option(help: scheduleHelp)
    var schedule: ScheduleArgument?

    @Option(help: ArgumentHelp(
        "Break the primary on purpose, to see the oracle catch it: \(Injection.allCases.map(\.rawValue).joined(separator: ", ")); repeatable.",
        valueName: "fault"))
    var inject: [Injection] = []

    enum Injection: String, ExpressibleByArgument, CaseIterable {
        case freeBeforeInvalidate = "free-before-invalidate"
        case skipRangeEnd = "skip-range-end"
        case skipYoungCheck = "skip-young-check"
        case dropSecondaryDirty = "drop-secondary-dirty"

        var fault: MemoryFaultInjection {
            switch self {
            case .freeBeforeInvalidate: .freeBeforeInvalidate
            case .skipRangeEnd: .skipRangeEnd
            case .skipYoungCheck: .skipYoungCheck
            case .dropSecondaryDirty: .dropSecondaryDirty
            }
        }
    }

    func validate() throws {
        if let duration, !(duration > 0 && duration <= 86_400) { throw ValidationError("--duration must be in (0, 86400] seconds") }
        try RunSession.validateReportPaths(json: json, report: report)
    }

    func run() throws { try session().run() }

    /// The run these flags ask for (also what `mmulab replay` reruns).
    func session() -> RunSession {
        var session = RunSession(scenarioArgument: scenario)
        session.options.seed = seed
        session.options.seconds = duration
        session.options.pluginDirectory = pluginDirectory
        session.options.faults = MemoryFaultInjection(inject.map(\.fault))
        session.options.schedule = schedule?.strategy
        session.plugins = plugin
        session.pluginOptions = pluginOptions
        session.jsonPath = json
        session.reportPath = report
        if let duration { session.replayFlags += ["--duration", formatSeconds(duration)] }
        if let pluginDirectory { session.replayFlags += ["--plugin-directory", pluginDirectory] }
        for fault in inject { session.replayFlags += ["--inject", fault.rawValue] }
        if let schedule { session.replayFlags += ["--schedule", schedule.strategy.description] }
        return session
    }
}
