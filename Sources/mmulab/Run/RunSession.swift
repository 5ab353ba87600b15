import ArgumentParser
import Foundation
import LabSync
import PluginHost
import ReclaimLab

#if canImport(Glibc)
import Glibc
#endif

/// One scenario run as `mmulab run` and `mmulab demo` do it: the scenario
/// found by name or path, extra plugins added, a progress line on a
/// terminal, the summary, the JSON and HTML reports. Exit status: 0
/// clean, 1 findings, 2 bad input (nothing runs, nothing is written), 4 a
/// plugin crashed the run (its oops is on standard error; nothing else is
/// written).
struct RunSession {
    var scenarioArgument: String
    var options = RunOptions()
    var plugins: [String] = []
    var pluginOptions = ""
    var jsonPath: String? = nil
    var reportPath: String? = nil
    /// The `--inject` names given (the replay repeats them).
    var injections: [Injection] = []
    /// A line printed once the input is checked, before the run.
    var banner: String? = nil
    /// `--schedule-file`: the choices (and strategy) to follow, read by `preparedOptions`.
    var scheduleFilePath: String? = nil
    /// `--record-schedule`: where the run's choices go.
    var recordSchedulePath: String? = nil

    /// The schedule file at `path`; exit 2 with the reason if it cannot be read or is malformed.
    static func readScheduleFile(_ path: String) throws -> ScheduleFile {
        guard let data = FileManager.default.contents(atPath: path) else {
            writeToStandardError("mmulab: --schedule-file \(path): cannot read it\n")
            throw ExitCode(2)
        }
        do {
            return try ScheduleFile(parsing: String(decoding: data, as: UTF8.self))
        } catch {
            writeToStandardError("mmulab: --schedule-file \(path): \(error)\n")
            throw ExitCode(2)
        }
    }

    /// `options` with the schedule file's strategy and choices, if one was given.
    func preparedOptions() throws -> RunOptions {
        var options = options
        if let scheduleFilePath {
            let file = try Self.readScheduleFile(scheduleFilePath)
            options.schedule = file.strategy
            options.scheduleChoices = file.choices
        }
        options.recordsChoices = recordSchedulePath != nil
        return options
    }

    /// Checks what can be checked while parsing: at most one report on
    /// standard output (the paths themselves are checked by `run`, before
    /// anything runs).
    static func validateReportPaths(json: String?, report: String?) throws {
        if json == "-" && report == "-" { throw ValidationError("--json and --report cannot both go to standard output (-)") }
    }

    /// The scenario `argument` names (`ScenarioLookup`); exit 2 with the
    /// reason on standard error if there is none.
    static func loadScenario(_ argument: String) throws -> Scenario {
        do {
            return try ScenarioLookup.scenario(argument)
        } catch {
            writeToStandardError("mmulab: \(error)\n")
            throw ExitCode(2)
        }
    }

    /// The report destinations, checked before anything runs; exit 2 with
    /// the reason if one cannot be written.
    static func destinations(json: String?, report: String?) throws -> (json: ReportDestination?, report: ReportDestination?) {
        do {
            var destinations: (json: ReportDestination?, report: ReportDestination?) = (nil, nil)
            if let json { destinations.json = try ReportDestination.checked(json, option: "--json") }
            if let report { destinations.report = try ReportDestination.checked(report, option: "--report") }
            return destinations
        } catch {
            writeToStandardError("mmulab: \(error)\n")
            throw ExitCode(2)
        }
    }

    func run() throws {
        let (json, report) = try Self.destinations(json: jsonPath, report: reportPath)
        let recording: ReportDestination?
        do {
            recording = try recordSchedulePath.map { path throws(ReportDestination.Failure) in try ReportDestination.checked(path, option: "--record-schedule") }
        } catch {
            writeToStandardError("mmulab: \(error)\n")
            throw ExitCode(2)
        }
        // With a report on standard output, everything meant for a person
        // goes to standard error, so the report can be piped.
        let human: Int32 = json?.isStandardOutput == true || report?.isStandardOutput == true ? STDERR_FILENO : STDOUT_FILENO
        var scenario = try Self.loadScenario(scenarioArgument)
        if let banner { writeText(banner + "\n", to: human) }
        do {
            for plugin in plugins { scenario = try scenario.adding(plugin: plugin, options: pluginOptions) }
        } catch {
            writeToStandardError("mmulab: \(error)\n")
            throw ExitCode(2)
        }
        var options = try preparedOptions()
        options.replay = ReplayCommand(
            scenario: scenarioArgument, seed: options.seed ?? scenario.seed, seconds: options.seconds, injections: injections, plugins: plugins,
            pluginOptions: pluginOptions, pluginDirectory: options.pluginDirectory)
        options.replay?.scheduleFile = scheduleFilePath
        options.replay?.kernelHandOver = !options.handsOverInUserSpace && ControlledScheduler.canHandOverInUserSpace
        nonisolated(unsafe) let line = ProgressLine(descriptor: human)
        options.progress = { progress in line.update(Self.progressText(progress)) }
        options.stopRequested = { StopSignals.received != nil }
        StopSignals.install(secondEndsProcess: true)
        // A plugin that crashes (SIGSEGV, abort, ...) inside a callback or a
        // host service gets an oops on standard error and exit status 4.
        PluginCrashReport.install()
        let result: RunResult
        do {
            result = try ScenarioRunner.run(scenario, options: options)
        } catch {
            line.finish()
            writeToStandardError("mmulab: \(error.mark == nil ? "\(scenario.name): " : "")\(error)\n")
            throw ExitCode(2)
        }
        line.finish()
        writeText(RunSummary(result: result).text + "\n", to: human)
        // A report that cannot be written is an error (exit 2), but never
        // hides findings (exit 1 wins) or an interruption.
        var written = true
        if let json { written = write(json, JSONReport.render(result)) && written }
        if let recording, let recorded = result.recordedSchedule, let strategy = options.schedule {
            let file = ScheduleFile(strategy: strategy, choices: recorded.choices)
            let text = file.text(threadNames: recorded.threadNames, comments: [
                "the scheduling choices of: \(result.replay.commandLine)",
                "replay: mmulab run ... --schedule-file FILE with the same scenario and seed (README: races that replay exactly)",
            ])
            written = write(recording, text) && written
        }
        if let report {
            if write(report, HTMLReport.render(result)) {
                if !report.isStandardOutput { writeText("report    \(report)\n", to: human) }
            } else {
                written = false
            }
        }
        if result.interrupted, let number = StopSignals.received { throw ExitCode(StopSignals.exitStatus(for: number)) }
        if result.hasFindings { throw ExitCode(1) }
        if !written { throw ExitCode(2) }
    }

    private func write(_ destination: ReportDestination, _ text: String) -> Bool {
        do {
            try destination.write(text)
            return true
        } catch {
            writeToStandardError("mmulab: \(error)\n")
            return false
        }
    }

    /// The live line: time, accesses and their rate, free frames,
    /// invalidations by event, findings.
    static func progressText(_ progress: RunProgress) -> String {
        let rate = progress.elapsedSeconds > 0 ? Double(progress.operations) / progress.elapsedSeconds : 0
        let events = progress.invalidations.sorted { $0.count > $1.count }.prefix(4).map { "\($0.event) \(compact($0.count))" }
        return "\(fixed(progress.elapsedSeconds)) s  \(compact(progress.operations)) accesses  \(fixed(rate / 1_000_000, digits: 2)) M/s  "
            + "free \(progress.freeFrames)  inval: \(events.isEmpty ? "none" : events.joined(separator: " "))  findings \(progress.findings)"
    }
}

/// 1234 -> "1234", 123456 -> "123k", 12345678 -> "12.3M".
func compact(_ value: Int) -> String {
    if value < 100_000 { return "\(value)" }
    if value < 10_000_000 { return "\(value / 1_000)k" }
    return "\(fixed(Double(value) / 1_000_000))M"
}
