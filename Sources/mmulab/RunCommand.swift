import ArgumentParser
import ReclaimLab

#if canImport(Glibc)
import Glibc
#endif

struct RunCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "run",
        abstract: "Run a reclaim scenario against its plugins and report what the oracle found.",
        discussion: """
            The scenario's workloads (CPU and device threads) and pressure (kswapd, a balloon, \
            migration, KSM, munmap churn, mprotect flips, fork, an OOM kill) run for its length; \
            every read is checked against the page's tag, and the primary checks every device \
            access. Findings name the invariant (stale translation, use after free, \
            cross-address-space leak, lost write, pin leak, context violation, unpaired \
            start/end, stuck). Replay a run with its seed.

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

    @Option(help: "Directory of the bundled plugins (default: beside mmulab).")
    var pluginDirectory: String?

    @Option(help: "Write the result as JSON to this file.")
    var json: String?

    func validate() throws {
        if let duration, !(duration > 0 && duration <= 86_400) { throw ValidationError("--duration must be in (0, 86400] seconds") }
        if let json, !JSONReport.canWrite(to: json) { throw ValidationError("--json \(json): its directory does not exist or is not writable") }
    }

    func run() throws {
        let parsed: Scenario
        do {
            parsed = try ScenarioLookup.scenario(scenario)
        } catch {
            writeToStandardError("mmulab: \(error)\n")
            throw ExitCode(2)
        }
        var options = RunOptions()
        options.seed = seed
        options.seconds = duration
        options.pluginDirectory = pluginDirectory
        nonisolated(unsafe) let line = ProgressLine(enabled: isatty(STDOUT_FILENO) != 0)
        options.progress = { progress in
            let rate = progress.elapsedSeconds > 0 ? Double(progress.operations) / progress.elapsedSeconds : 0
            line.update(
                "\(fixed(progress.elapsedSeconds)) s  \(progress.operations) checked accesses  \(fixed(rate / 1_000_000, digits: 2)) M/s  "
                    + "free frames \(progress.freeFrames)  findings \(progress.findings)")
        }
        let result: RunResult
        do {
            result = try ScenarioRunner.run(parsed, options: options)
        } catch {
            line.finish()
            writeToStandardError("mmulab: \(parsed.name): \(error)\n")
            throw ExitCode(2)
        }
        line.finish()
        print(summary(result))
        if let json {
            do {
                try JSONReport.write(result, to: json)
            } catch {
                writeToStandardError("mmulab: could not write the JSON report to \(json): \(error)\n")
                throw ExitCode(2)
            }
        }
        if !result.isClean { throw ExitCode(1) }
    }

    private func summary(_ r: RunResult) -> String {
        var lines: [String] = []
        let rate = r.elapsedSeconds > 0 ? Double(r.operations) / r.elapsedSeconds : 0
        lines.append("scenario \(r.scenario), seed \(r.seed): \(fixed(r.elapsedSeconds)) s")
        lines.append("accesses  CPU reads \(r.cpuReads), CPU writes \(r.cpuWrites), device reads \(r.deviceReads), device writes \(r.deviceWrites)")
        lines.append("          \(r.operations) in all (\(fixed(rate / 1_000_000, digits: 2)) M/s), \(r.checkedReads) reads checked, \(r.failedAccesses) failed cleanly")
        let interesting = r.machineStatistics.filter { $0.1 > 0 }.map { "\($0.0) \($0.1)" }
        lines.append("primary   " + interesting.joined(separator: ", "))
        for (name, stats) in r.pluginStatistics {
            lines.append("\(name.padded(to: 9)) " + stats.filter { $0.value > 0 }.map { "\($0.name) \($0.value)" }.joined(separator: ", "))
        }
        if r.isClean {
            lines.append("result    clean: no invariant broken")
        } else {
            lines.append("result    \(r.findingsTotal) findings (replay: mmulab run \(scenario) --seed \(r.seed)):")
            for finding in r.findings.prefix(20) { lines.append("  - \(finding)") }
        }
        return lines.joined(separator: "\n")
    }
}
