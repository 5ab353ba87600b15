import ArgumentParser
import LabSync
import ReclaimLab

#if canImport(Glibc)
import Glibc
#endif

struct CampaignCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "campaign",
        abstract: "Run scenarios over a range of seeds, each run a process of its own, and report the runs that failed.",
        discussion: """
            Every (scenario, seed) pair runs as `mmulab run NAME --seed S` in a child process \
            of its own (its own process group), up to --jobs at a time, so a plugin that crashes \
            or hangs costs one run, not the campaign. A run that outlives --timeout is killed and \
            counted as hung; one killed by a signal counts as crashed. The summary lists every \
            run that was not clean with the command that replays it, then the totals per scenario.

            Every scenario is read and checked before anything runs. Default timeout: \
            3 x --duration + 30 s; without --duration, 3 x the scenario's length + 30 s and at \
            least 300 s. Ctrl-C kills the running children and removes the temporary files.

            Exit status: 0 every run clean, 1 a run failed (findings, crashed, hung), \
            2 bad input (a bad scenario or flag, or runs that refused their input).
            """
    )

    @Argument(help: "Scenario files (YAML) or names of built-in ones (mmulab scenarios list).")
    var scenarios: [String]

    @Option(parsing: .unconditional, help: "Seeds to run: A..B (inclusive) or a single N, from 0.")
    var seeds: String

    @Option(parsing: .unconditional, help: "Runs at once (1...64).", transform: { try ArgumentValues.count($0, in: 1...64) })
    var jobs: Int = 1

    @Option(
        parsing: .unconditional, help: "How long each run lasts: seconds, or 500ms, 10s, 2m (replaces the scenarios' lengths).",
        transform: ArgumentValues.duration)
    var duration: Double?

    @Option(
        parsing: .unconditional, help: "How long before a run counts as hung and is killed: seconds, or 30s, 5m.",
        transform: { try DurationText.seconds($0, in: 0.001...604_800) })
    var timeout: Double?

    @Option(help: "Directory of the bundled plugins (default: beside mmulab).")
    var pluginDirectory: String?

    @Option(help: ArgumentHelp("Add a plugin (a .so path or a bundled name) to every run, as `mmulab run --plugin`; repeatable.", valueName: "path"))
    var plugin: [String] = []

    @Option(help: "Options for the plugins --plugin adds.")
    var pluginOptions: String = ""

    @Option(help: "Write the campaign's summary as JSON to this file.")
    var json: String?

    @Option(help: scheduleHelp)
    var schedule: ScheduleArgument?

    /// Most runs (scenarios x seeds) one campaign may ask for.
    static let maximumRuns: UInt64 = 10_000

    func validate() throws {
        guard !scenarios.isEmpty else { throw ValidationError("name at least one scenario") }
        if !pluginOptions.isEmpty && plugin.isEmpty {
            throw ValidationError("--plugin-options applies to the plugins --plugin adds, and there is no --plugin")
        }
        let range = try Self.seedRange(seeds)
        let scenarioCount = UInt64(Set(scenarios).count)
        let (seedCount, wrapped) = (range.upperBound - range.lowerBound).addingReportingOverflow(1)
        let (runs, overflow) = seedCount.multipliedReportingOverflow(by: scenarioCount)
        if wrapped || overflow || runs > Self.maximumRuns {
            throw ValidationError("--seeds \(seeds) over \(scenarioCount) scenario(s) is more than \(Self.maximumRuns) runs")
        }
        if let pluginDirectory {
            var info = stat()
            guard stat(pluginDirectory, &info) == 0, info.st_mode & S_IFMT == S_IFDIR else {
                throw ValidationError("--plugin-directory \(pluginDirectory): not a directory")
            }
        }
    }

    /// `A..B` (inclusive, A <= B) or `N`, as seeds.
    static func seedRange(_ text: String) throws(ValidationError) -> ClosedRange<UInt64> {
        if text.hasPrefix("-") { throw ValidationError("--seeds \(text): seeds are 0 or more") }
        let parts = text.split(separator: "..", omittingEmptySubsequences: false)
        guard parts.count <= 2, let first = UInt64(parts[0]), let last = UInt64(parts.last!) else {
            throw ValidationError("--seeds must be A..B or N with whole numbers from 0, got '\(text)'")
        }
        guard first <= last else { throw ValidationError("--seeds \(text): the last seed is below the first") }
        return first...last
    }

    func run() throws {
        let (jsonDestination, _) = try RunSession.destinations(json: json, report: nil)
        // With the JSON summary on standard output, the table goes to standard error.
        let human: Int32 = jsonDestination?.isStandardOutput == true ? STDERR_FILENO : STDOUT_FILENO
        var names: [String] = []
        for name in scenarios where !names.contains(name) { names.append(name) }
        var timeouts: [String: Double] = [:]
        var bad = 0
        for name in names {
            do {
                var scenario = try ScenarioLookup.scenario(name)
                for added in plugin { scenario = try scenario.adding(plugin: added, options: pluginOptions) }
                timeouts[name] = runTimeout(for: scenario)
            } catch {
                writeToStandardError("mmulab: \(error)\n")
                bad += 1
            }
        }
        if bad > 0 { throw ExitCode(2) }
        guard let executable = currentExecutablePath() else {
            writeToStandardError("mmulab: cannot find this executable (/proc/self/exe) to run the scenarios\n")
            throw ExitCode(2)
        }
        let range = try Self.seedRange(seeds)
        let runs = names.flatMap { name in range.map { CampaignRun(scenario: name, seed: $0) } }

        StopSignals.install(secondEndsProcess: false)
        guard let scratch = ScratchDirectory(prefix: "mmulab-campaign") else {
            writeToStandardError("mmulab: cannot make a temporary directory: \(String(cString: strerror(errno)))\n")
            throw ExitCode(2)
        }
        var extra: [String] = []
        if let duration { extra += ["--duration", ReplayCommand.secondsText(duration)] }
        if let pluginDirectory { extra += ["--plugin-directory", pluginDirectory] }
        for added in plugin { extra += ["--plugin", added] }
        if !pluginOptions.isEmpty { extra += ["--plugin-options", pluginOptions] }
        if let schedule { extra += ["--schedule", schedule.strategy.description] }
        let frozenTimeouts = timeouts
        let runner = CampaignRunner(
            executable: executable, environment: processEnvironment(), runs: runs, jobs: jobs, extraArguments: extra,
            timeout: { frozenTimeouts[$0] ?? 300 }, scratch: scratch, readFindings: readRunFindings)

        let started = ContinuousClock.now
        let line = ProgressLine(descriptor: human)
        let records = runner.execute { done, failed in
            line.update("campaign  \(done)/\(runs.count) runs done  \(failed) failed")
        }
        line.finish()
        scratch.remove()

        let stopped = StopSignals.received
        let report = CampaignReport(
            scenarios: names, seeds: range, jobs: jobs, duration: duration, pluginDirectory: pluginDirectory, plugins: plugin,
            pluginOptions: pluginOptions, schedule: schedule?.strategy.description,
            records: records, plannedRuns: runs.count, elapsedSeconds: (ContinuousClock.now - started).seconds,
            interrupted: stopped != nil)
        writeText(report.text() + "\n", to: human)
        // The JSON summary is written on interruption too: what ran is not lost.
        var written = true
        if let jsonDestination {
            do {
                try jsonDestination.write(report.jsonText())
            } catch {
                writeToStandardError("mmulab: \(error)\n")
                written = false
            }
        }
        if let stopped {
            signal(stopped, SIG_DFL)
            raise(stopped)  // end as the signal would have: the shell sees it
        }
        if report.exitStatus != 0 { throw ExitCode(report.exitStatus) }
        if !written { throw ExitCode(2) }
    }

    /// The time a run of `scenario` gets before it counts as hung.
    private func runTimeout(for scenario: Scenario) -> Double {
        if let timeout { return timeout }
        if let duration { return duration * 3 + 30 }
        if case .seconds(let seconds) = scenario.length { return max(300, seconds * 3 + 30) }
        return 300
    }
}
