import ArgumentParser
import ReclaimLab

#if canImport(Glibc)
import Glibc
#endif

/// One scenario run as `mmulab run` and `mmulab demo` do it: the scenario
/// found by name or path, extra plugins added, a progress line on a
/// terminal, the summary, the JSON and HTML reports. Exit status: 0
/// clean, 1 findings, 2 bad input (nothing runs, nothing is written).
struct RunSession {
    var scenarioArgument: String
    var options = RunOptions()
    var plugins: [String] = []
    var pluginOptions = ""
    var jsonPath: String? = nil
    var reportPath: String? = nil
    /// Flags the replay command repeats (besides the seed).
    var replayFlags: [String] = []

    /// Checks what can be checked before anything runs: the report paths.
    static func validateReportPaths(json: String?, report: String?) throws {
        if let json, !JSONReport.canWrite(to: json) { throw ValidationError("--json \(json): its directory does not exist or is not writable") }
        if let report, !JSONReport.canWrite(to: report) {
            throw ValidationError("--report \(report): its directory does not exist or is not writable")
        }
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

    func run() throws {
        var scenario = try Self.loadScenario(scenarioArgument)
        do {
            for plugin in plugins { scenario = try scenario.adding(plugin: plugin, options: pluginOptions) }
        } catch {
            writeToStandardError("mmulab: \(error)\n")
            throw ExitCode(2)
        }
        var options = options
        nonisolated(unsafe) let line = ProgressLine(enabled: isatty(STDOUT_FILENO) != 0)
        options.progress = { progress in line.update(Self.progressText(progress)) }
        let result: RunResult
        do {
            result = try ScenarioRunner.run(scenario, options: options)
        } catch {
            line.finish()
            writeToStandardError("mmulab: \(scenario.name): \(error)\n")
            throw ExitCode(2)
        }
        line.finish()
        print(RunSummary(result: result, replay: replayCommand(seed: result.seed)).text)
        // A report that cannot be written is an error (exit 2), but never
        // hides findings (exit 1 wins).
        var written = true
        if let jsonPath { written = write("JSON report", to: jsonPath) { try JSONReport.write(result, to: $0) } && written }
        if let reportPath {
            if write("HTML report", to: reportPath, { try HTMLReport.write(result, to: $0) }) { print("report    \(reportPath)") } else { written = false }
        }
        if !result.isClean { throw ExitCode(1) }
        if !written { throw ExitCode(2) }
    }

    private func write(_ what: String, to path: String, _ body: (String) throws -> Void) -> Bool {
        do {
            try body(path)
            return true
        } catch {
            writeToStandardError("mmulab: could not write the \(what) to \(path): \(error)\n")
            return false
        }
    }

    /// The command that replays this run.
    func replayCommand(seed: UInt64) -> String {
        var words = ["mmulab", "run", scenarioArgument, "--seed", "\(seed)"] + replayFlags
        for plugin in plugins { words += ["--plugin", plugin] }
        if !pluginOptions.isEmpty { words += ["--plugin-options", pluginOptions] }
        return words.map(shellQuoted).joined(separator: " ")
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
