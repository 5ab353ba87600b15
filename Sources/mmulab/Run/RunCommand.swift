import ArgumentParser
import Foundation
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

            Findings are gathered into bugs (the invariant, the plugin instance, the callback or \
            access path, the invalidation before it), each with a count, the time it was first \
            seen, its first occurrence in full and a few more; the oracle's symptoms of an access \
            the primary already flagged are attached to that bug.

            Exit status: 0 clean, 0 SKIP (no read was checked: the run proves nothing), 1 \
            findings, 2 bad input (a malformed scenario, a plugin that does not load, a bad flag), \
            4 a plugin crashed the run (a SIGSEGV, SIGBUS, SIGILL, SIGFPE or abort in one of its \
            callbacks or in a host service it called): its oops is on standard error, with the \
            plugin, the callback, the range or binding, the faulting address, the last events and \
            the replay command.
            """
    )

    @Argument(help: "A scenario file (YAML), or the name of a built-in one (mmulab scenarios list).")
    var scenario: String

    @OptionGroup var seedOption: SeedOption

    @Option(
        parsing: .unconditional, help: "How long to run: seconds, or 500ms, 10s, 2m (replaces the scenario's length).", transform: ArgumentValues.duration)
    var duration: Double?

    @Option(help: ArgumentHelp("Add a plugin (a .so path or a bundled name) to the scenario; repeatable.", valueName: "path"))
    var plugin: [String] = []

    @Option(help: "Options for the plugins --plugin adds (needs --plugin).")
    var pluginOptions: String?

    @OptionGroup var bundledPlugins: PluginDirectoryOption

    @OptionGroup var reports: RunReportOptions

    @OptionGroup var scheduling: ScheduleOption

    @Option(help: ArgumentHelp(
        "Run deterministically, following the scheduling choices in this file (from --record-schedule or mmulab shrink), then "
            + "its strategy (the file names it: no --schedule).", valueName: "file"))
    var scheduleFile: String?

    @Option(help: ArgumentHelp(
        "With --schedule or --schedule-file: write the run's scheduling choices to this file, for --schedule-file.", valueName: "file"))
    var recordSchedule: String?

    @Option(
        parsing: .unconditional,
        help: ArgumentHelp(
            "With --schedule or --schedule-file: end the run once it is past this scheduling step (the actors finish their round; "
                + "teardown and its checks run), as at a finding's step.", valueName: "step"),
        transform: { UInt64(try ArgumentValues.count($0, in: 1...Int.max)) })
    var stopAtStep: UInt64?

    @Option(help: ArgumentHelp(
        "With --schedule: if the run fails, shrink it (mmulab shrink, its first bug) into this directory; the run's report goes "
            + "there as report.json unless --json names a file.", valueName: "dir"))
    var shrink: String?

    @Option(help: ArgumentHelp(
        "Break the primary on purpose, to see the oracle catch it: \(Injection.allCases.map(\.rawValue).joined(separator: ", ")); repeatable.",
        valueName: "fault"), transform: Self.injection)
    var inject: [Injection] = []

    static func injection(_ text: String) throws -> Injection {
        guard let injection = Injection(rawValue: text) else {
            throw ValidationError("'\(text)' is not a fault injection (\(Injection.allCases.map(\.rawValue).joined(separator: ", ")))")
        }
        return injection
    }

    // --json and --report are checked by their group (RunReportOptions), before this.
    func validate() throws {
        let (schedule, json, report) = (scheduling.schedule, reports.json, reports.report)
        if pluginOptions != nil && plugin.isEmpty {
            throw ValidationError("--plugin-options applies to the plugins --plugin adds, and there is no --plugin (a scenario file's plugins take 'options:')")
        }
        if schedule != nil && scheduleFile != nil {
            throw ValidationError("--schedule-file names its strategy: give --schedule-file or --schedule, not both")
        }
        if shrink != nil {
            guard schedule != nil || scheduleFile != nil else { throw ValidationError("--shrink needs a deterministic run: add --schedule") }
            guard json != "-" && report != "-" else { throw ValidationError("--shrink prints its progress: no report on standard output (-)") }
        }
        if schedule == nil && scheduleFile == nil {
            if recordSchedule != nil { throw ValidationError("--record-schedule needs a deterministic run: add --schedule (or --schedule-file)") }
            if stopAtStep != nil { throw ValidationError("--stop-at-step needs a deterministic run: add --schedule (or --schedule-file)") }
            if scheduling.kernelHandOver {
                throw ValidationError("--kernel-hand-over applies to a deterministic run: add --schedule (or --schedule-file)")
            }
        }
    }

    func run() throws {
        guard let shrink else { return try session().run() }
        var session = session()
        let report = reports.json ?? shrink + "/report.json"
        session.jsonPath = report
        do {
            try FileManager.default.createDirectory(atPath: shrink, withIntermediateDirectories: true)
            try session.run()
        } catch let code as ExitCode where code.rawValue == 1 {
            // Findings: shrink the first bug (a report that could not be written ends in mmulab shrink's own refusal).
            print("")
            var command = try ShrinkCommand.parse([report, "--output-directory", shrink])
            if let pluginDirectory = bundledPlugins.pluginDirectory { command.pluginDirectory = pluginDirectory }
            try command.run()
            throw code
        } catch let error as CocoaError {
            writeToStandardError("mmulab: --shrink \(shrink): \(error.localizedDescription)\n")
            throw ExitCode(2)
        }
    }

    /// The run these flags ask for (also what `mmulab replay` reruns).
    func session() -> RunSession {
        var session = RunSession(scenarioArgument: scenario)
        session.options.seed = seedOption.seed
        session.options.seconds = duration
        session.options.pluginDirectory = bundledPlugins.pluginDirectory
        session.options.faults = MemoryFaultInjection(inject.map(\.fault))
        session.plugins = plugin
        session.pluginOptions = pluginOptions ?? ""
        session.jsonPath = reports.json
        session.reportPath = reports.report
        session.injections = inject
        session.options.schedule = scheduling.schedule?.strategy
        session.scheduleFilePath = scheduleFile
        session.recordSchedulePath = recordSchedule
        session.options.stopAtStep = stopAtStep
        if scheduling.kernelHandOver { session.options.handsOverInUserSpace = false }
        if let stopAtStep { session.options.stepLimit = stopAtStep.addingReportingOverflow(ScenarioRunner.stepsAfterStop).partialValue }
        return session
    }
}
