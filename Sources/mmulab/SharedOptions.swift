import ArgumentParser

// The options `run`, `demo` and `campaign` share, each declared once: the
// same flag, default, help and checks wherever it appears. A command puts
// each group where the option stands in its help.

/// `--seed` of one run (`run`, `demo`).
struct SeedOption: ParsableArguments {
    @Option(parsing: .unconditional, help: "Seed: a whole number from 0 (replaces the scenario's; a finding's seed replays it).", transform: ArgumentValues.seed)
    var seed: UInt64?
}

/// `--plugin-directory` (`run`, `demo`, `campaign`).
struct PluginDirectoryOption: ParsableArguments {
    @Option(help: "Directory of the bundled plugins (default: beside mmulab).")
    var pluginDirectory: String?
}

/// `--json` and `--report` of one run (`run`, `demo`): at most one of them
/// on standard output.
struct RunReportOptions: ParsableArguments {
    @Option(help: ArgumentHelp("Write the result as JSON to this file ('-': standard output).", valueName: "file"))
    var json: String?

    @Option(help: ArgumentHelp("Write a self-contained HTML report (bugs, charts, latencies) to this file ('-': standard output).", valueName: "file"))
    var report: String?

    func validate() throws {
        try RunSession.validateReportPaths(json: json, report: report)
    }
}

/// `--schedule` and `--kernel-hand-over` (`run`, `campaign`); each command
/// checks that the second comes with a deterministic run.
struct ScheduleOption: ParsableArguments {
    @Option(help: scheduleHelp)
    var schedule: ScheduleArgument?

    @Flag(help: ArgumentHelp(
        "With a deterministic run: give every thread of a run its own kernel thread, handed over through the kernel, instead of "
            + "one kernel thread switching between them in user space (the same schedule, about half the speed: for a plugin "
            + "that needs its threads to be distinct kernel threads, or to compare)."))
    var kernelHandOver = false
}
