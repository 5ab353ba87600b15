import ArgumentParser
import Foundation
import ReclaimLab

/// `mmulab replay REPORT.json [--trail]`: reruns the deterministic run a
/// JSON report describes (its `replay.arguments`), checks that the first
/// finding comes back at the same step, and with `--trail` prints the steps
/// before it as a race diagram.
struct ReplayRunCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "replay",
        abstract: "Replay a deterministic run from its JSON report and show the interleaving that led to its first finding.",
        discussion: """
            The report must come from `mmulab run ... --schedule S --json REPORT.json` (it carries the \
            run's arguments and each finding's step). The run is repeated; the first finding must come \
            back at the same step. With --trail, the last --steps scheduling steps up to that finding are \
            printed as a race diagram: one lane per thread, what each did at each step (locks, waits, \
            sleeps, spawns) and, indented, what the primary told the devices then (invalidation starts \
            and ends, change_pte, young checks, releases), with the page range and address space.

            Exit status: 0 the finding replayed, 1 it did not (the run is not reproducible), \
            2 bad input (no such report, not a deterministic run, no finding).
            """
    )

    @Argument(help: "The JSON report of a run made with --schedule.")
    var report: String

    @Flag(help: "Print the steps before the first finding as a race diagram.")
    var trail = false

    @Option(help: "How many steps before the finding --trail shows (1...100000).")
    var steps: Int = 300

    @Option(help: "Directory of the bundled plugins (replaces the report's, if any).")
    var pluginDirectory: String?

    func validate() throws {
        guard (1...100_000).contains(steps) else { throw ValidationError("--steps must be 1...100000, got \(steps)") }
    }

    /// What the report says about the run and the first finding of its first bug.
    struct Recorded {
        var arguments: [String]
        var invariant: String
        var detail: String
        var step: Int
        /// The step of the bad access, for a finding the primary's access check made.
        var accessStep: Int?
    }

    static func read(_ path: String) throws -> Recorded {
        func bad(_ why: String) -> ExitCode {
            writeToStandardError("mmulab: \(path): \(why)\n")
            return ExitCode(2)
        }
        guard let data = FileManager.default.contents(atPath: path) else { throw bad("cannot read it") }
        guard let json = (try? JSONSerialization.jsonObject(with: data)) as? [String: Any] else { throw bad("not a JSON report") }
        guard let replay = json["replay"] as? [String: Any], let words = replay["arguments"] as? [String], words.first == "run" else {
            throw bad("no replay.arguments (a report of mmulab run --json from this version is needed)")
        }
        let arguments = Array(words.dropFirst())
        guard json["schedule"] != nil, arguments.contains("--schedule") || arguments.contains("--schedule-file") else {
            throw bad("the run was not deterministic (run it with --schedule to replay it step by step)")
        }
        guard let first = (json["findings"] as? [[String: Any]])?.first else { throw bad("the run has no finding to replay") }
        guard let step = first["step"] as? Int, let invariant = first["invariant"] as? String, let detail = first["detail"] as? String else {
            throw bad("the first finding has no step")
        }
        return Recorded(arguments: arguments, invariant: invariant, detail: detail, step: step, accessStep: first["access_step"] as? Int)
    }

    func run() throws {
        let recorded = try Self.read(report)
        var arguments = recorded.arguments
        if let pluginDirectory { arguments += ["--plugin-directory", pluginDirectory] }
        let command: RunCommand
        do {
            command = try RunCommand.parse(arguments)
        } catch {
            writeToStandardError("mmulab: \(report): replay.arguments: \(RunCommand.message(for: error))\n")
            throw ExitCode(2)
        }
        let session = command.session()
        var scenario = try RunSession.loadScenario(session.scenarioArgument)
        do {
            for plugin in session.plugins { scenario = try scenario.adding(plugin: plugin, options: session.pluginOptions) }
        } catch {
            writeToStandardError("mmulab: \(error)\n")
            throw ExitCode(2)
        }
        var options = try session.preparedOptions()
        // The steps up to the bad access itself where the report has it
        // (a finding the access check made is noted later, when the run
        // drains the machine's log), else up to the finding.
        let lastStep = recorded.accessStep ?? recorded.step
        if trail { options.trace = (lastStep: UInt64(lastStep), steps: steps) }
        let result: RunResult
        do {
            result = try ScenarioRunner.run(scenario, options: options)
        } catch {
            writeToStandardError("mmulab: \(scenario.name): \(error)\n")
            throw ExitCode(2)
        }
        print("replay    " + (["mmulab", "run"] + recorded.arguments).map(ReplayCommand.quoted).joined(separator: " "))
        if trail {
            let upTo = recorded.accessStep.map { "the bad access (step \($0); the finding was noted at step \(recorded.step))" }
                ?? "the first finding (step \(recorded.step))"
            print("the last \(result.trace.filter { TraceDiagram.isOperation($0.text) }.count) steps up to \(upTo), a lane per thread:")
            print(TraceDiagram(lines: result.trace).text, terminator: "")
        }
        print("▶ step \(recorded.step): \(recorded.invariant): \(recorded.detail)")
        guard let again = result.findings.first else {
            print("NOT REPLAYED: the replay found nothing")
            throw ExitCode(1)
        }
        guard again.invariant.rawValue == recorded.invariant, again.detail == recorded.detail, again.step == UInt64(recorded.step) else {
            print("NOT REPLAYED: the replay's first finding differs: step \(again.step.map(String.init) ?? "?"): \(again)")
            throw ExitCode(1)
        }
        print("replayed: the same first finding at the same step")
    }
}
