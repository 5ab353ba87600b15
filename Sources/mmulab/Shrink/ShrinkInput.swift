import ArgumentParser
import Foundation
import LabSync
import ReclaimLab

/// What `mmulab shrink` takes from a failing deterministic run's JSON
/// report: the scenario as it ran (`scenario_yaml`, plugins added by
/// `--plugin` included), the seed, the schedule (strategy, and the choices
/// if the run followed a schedule file), the injected faults, the plugins'
/// directory, the bug to keep (by title) and the step it first appeared at,
/// and the run's size.
struct ShrinkInput {
    var scenario: Scenario
    var seed: UInt64
    var strategy: ScheduleStrategy
    var choices: ScheduleChoices?
    var injections: [Injection]
    var pluginDirectory: String?
    var title: String
    /// Which of the report's bugs it is (1-based) and how many there are.
    var bugNumber: Int
    var bugCount: Int
    var failingStep: UInt64
    /// The report's run: steps in all, threads, switches.
    var steps: Int
    var threads: Int
    var switches: Int
    /// The arguments after `mmulab` that made the report.
    var arguments: [String]

    /// Reads the report at `path` (exit 2 with one line why, if it cannot be
    /// shrunk); `bug` picks a bug by title, else the first.
    static func read(_ path: String, bug: String?) throws -> ShrinkInput {
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
        guard let schedule = json["schedule"] as? [String: Any], arguments.contains("--schedule") || arguments.contains("--schedule-file") else {
            throw bad("the run was not deterministic: shrinking needs a run made with --schedule")
        }
        guard let bugs = json["bugs"] as? [[String: Any]], !bugs.isEmpty else { throw bad("the run found no bug to shrink") }
        let titles = bugs.compactMap { $0["title"] as? String }
        guard titles.count == bugs.count else { throw bad("a bug without a title") }
        let index: Int
        if let bug {
            guard let found = titles.firstIndex(of: bug) else {
                throw bad("no bug titled '\(bug)'; its bugs are:\n" + titles.map { "  \($0)" }.joined(separator: "\n"))
            }
            index = found
        } else {
            index = 0
        }
        guard let first = bugs[index]["first"] as? [String: Any], let step = (first["step"] as? Int).flatMap({ UInt64(exactly: $0) }), step > 0 else {
            throw bad("the bug '\(titles[index])' has no step (not a deterministic finding)")
        }
        guard let yaml = json["scenario_yaml"] as? String, !yaml.isEmpty else { throw bad("no scenario_yaml") }
        let scenario: Scenario
        do {
            scenario = try ScenarioReader.read(yaml: yaml, file: "\(path): scenario_yaml")
        } catch {
            throw bad("its scenario does not read: \(error)")
        }
        let command: RunCommand
        do {
            command = try RunCommand.parse(arguments)
        } catch {
            throw bad("replay.arguments: \(RunCommand.message(for: error))")
        }
        let session = command.session()
        let options = try session.preparedOptions()
        guard let strategy = options.schedule else { throw bad("no schedule strategy in replay.arguments") }
        guard let seed = (json["seed"] as? Int).flatMap({ UInt64(exactly: $0) }) ?? options.seed else { throw bad("no seed") }
        return ShrinkInput(
            scenario: scenario, seed: seed, strategy: strategy, choices: options.scheduleChoices, injections: session.injections,
            pluginDirectory: options.pluginDirectory, title: titles[index], bugNumber: index + 1, bugCount: bugs.count, failingStep: step,
            steps: schedule["steps"] as? Int ?? 0, threads: schedule["threads"] as? Int ?? 0, switches: schedule["switches"] as? Int ?? 0,
            arguments: arguments)
    }
}
