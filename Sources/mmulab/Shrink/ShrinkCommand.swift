import ArgumentParser
import Foundation
import LabSync
import ReclaimLab

#if canImport(Glibc)
import Glibc
#endif

/// `mmulab shrink REPORT.json`: cuts a failing deterministic run down to a
/// minimal scenario and schedule that still fail with the same bug
/// (`Shrinker`), writes them, and prints the sizes before and after and the
/// command that replays the minimal case. Candidates run as child processes
/// (`CandidateProcess` says why).
struct ShrinkCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "shrink",
        abstract: "Cut a failing deterministic run down to a minimal scenario and schedule that still fail with the same bug.",
        discussion: """
            The report must come from `mmulab run ... --schedule S --json REPORT.json` with a bug. The shrink \
            keeps the report's first bug (or --bug TITLE): every candidate must fail with a bug of the same \
            title. It drops workloads, pressure and plugins (delta debugging), halves threads, memory, \
            mappings and rates (and raises a rate where the bug then comes sooner), cuts the run at the \
            bug's step, and cuts the run's scheduling choices (its deviations from non-preemptive round \
            robin) down by delta debugging. Each candidate is an `mmulab run` child process cut at a step \
            and killed after --timeout seconds.

            It writes DIR/minimal.yaml (the scenario), DIR/minimal.schedule (for --schedule-file) and \
            DIR/minimal.json (the minimal run's report, for `mmulab replay DIR/minimal.json --trail`), and \
            prints the sizes before and after (the bug's step, steps, threads, switches, choices) and the \
            command that replays the minimal case. The same report and flags give the same result.

            Exit status: 0 shrunk (the minimal case fails with the bug), 1 the bug did not come back \
            (from the report's scenario, or in the minimal case), 2 bad input.
            """
    )

    @Argument(help: "The JSON report of a failing run made with --schedule.")
    var report: String

    @Option(help: ArgumentHelp("The bug to keep, by its title (default: the report's first).", valueName: "title"))
    var bug: String?

    @Option(help: ArgumentHelp("Where the minimal case goes (default: the report's path without .json, plus -shrunk).", valueName: "dir"))
    var outputDirectory: String?

    @Option(parsing: .unconditional, help: "Candidate runs at most (10...100000).", transform: { try ArgumentValues.count($0, in: 10...100_000) })
    var maxRuns: Int = 200

    @Option(
        parsing: .unconditional, help: "Real seconds a candidate run may take before it is killed (counted as not failing).",
        transform: ArgumentValues.duration)
    var timeout: Double = 120

    @Option(help: "Directory of the bundled plugins (replaces the report's, if any).")
    var pluginDirectory: String?

    func validate() throws {
        guard timeout > 0 else { throw ValidationError("--timeout must be more than 0") }
    }

    func run() throws {
        var input = try ShrinkInput.read(report, bug: bug)
        if let pluginDirectory { input.pluginDirectory = pluginDirectory }
        var directory = outputDirectory ?? Self.defaultDirectory(for: report)
        if !directory.hasPrefix("/") { directory = FileManager.default.currentDirectoryPath + "/" + directory }
        // The candidates' files go to a directory of the shrink's own,
        // made new (mkdtemp) and removed at the end: nothing the user had
        // in DIR is ever overwritten or removed but the three files the
        // shrink writes.
        do {
            try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        } catch {
            writeToStandardError("mmulab: --output-directory \(directory): \(error.localizedDescription)\n")
            throw ExitCode(2)
        }
        guard let work = Self.newWorkDirectory(in: directory) else {
            writeToStandardError("mmulab: --output-directory \(directory): cannot create a directory in it (\(String(cString: strerror(errno))))\n")
            throw ExitCode(2)
        }
        guard let executable = currentExecutablePath() else {
            writeToStandardError("mmulab: cannot find this executable (/proc/self/exe) to run candidates\n")
            throw ExitCode(2)
        }
        StopSignals.install(secondEndsProcess: false)
        let process = CandidateProcess(
            executable: executable, environment: processEnvironment(), directory: work, seed: input.seed, strategy: input.strategy,
            injections: input.injections, pluginDirectory: input.pluginDirectory, timeout: timeout)
        var scenario = input.scenario
        if !scenario.name.hasSuffix("-shrunk") { scenario.name += "-shrunk" }
        scenario.summary = "mmulab shrink of \(input.scenario.name), seed \(input.seed), \(input.strategy): \(input.title)"

        print("shrink    \(input.title) (bug \(input.bugNumber) of \(input.bugCount) in \(report))")
        print("from      " + (["mmulab", "run"] + input.arguments).map(ReplayCommand.quoted).joined(separator: " "))
        let stopwatch = Stopwatch()
        let shrinker = Shrinker(title: input.title, budget: maxRuns, log: { print($0) }) { process.run($0) }
        let outcome: Shrinker.Outcome
        do {
            outcome = try shrinker.shrink(scenario, choices: input.choices, failingStep: input.failingStep)
        } catch {
            try? FileManager.default.removeItem(atPath: work)
            print("NOT REPRODUCED: \(error)")
            throw ExitCode(1)
        }
        let seconds = stopwatch.seconds

        // The minimal case, written and run once more as the user will run it.
        let after = outcome.after
        let files = CandidateProcess.Files(
            scenario: directory + "/minimal.yaml", schedule: directory + "/minimal.schedule", json: directory + "/minimal.json",
            log: work + "/minimal.log", recorded: "")
        let minimal = ShrinkCandidate(scenario: after.scenario, choices: after.choices ?? ScheduleChoices([], through: 0), stopAtStep: after.cut)
        do {
            try process.write(minimal, to: files)
        } catch {
            writeToStandardError("mmulab: \(directory): \(error.localizedDescription)\n")
            throw ExitCode(2)
        }
        let replay = ["mmulab"] + process.arguments(minimal, files, json: false)
        let status = process.execute(process.arguments(minimal, files), log: files.log)
        let final = CandidateProcess.outcome(ofReport: files.json)
        try? FileManager.default.removeItem(atPath: work)
        // The same schedule again, its comments now naming the threads (the choices are unchanged).
        if let final {
            try? process.write(minimal, to: files, threadNames: final.threadNames, comments: [
                "mmulab shrink: the scheduling choices (deviations from round robin without preemption) that, with",
                "\(files.scenario) and seed \(input.seed), make: \(input.title)",
                "replay: " + replay.map(ReplayCommand.quoted).joined(separator: " "),
            ])
        }

        let choicesAfter = minimal.choices?.choices.count ?? 0
        print("before    the report's run: bug at step \(grouped(Int(input.failingStep))) of \(grouped(input.steps)) steps, "
            + "\(input.threads) threads, \(grouped(input.switches)) switches"
            + (outcome.choicesBefore.map { "; \(grouped($0)) scheduling choice\($0 == 1 ? "" : "s") up to the bug" } ?? ""))
        if let final, let bug = final.bugs.first(where: { $0.title == input.title }), status == .exited(1) {
            print("after     bug at step \(grouped(Int(bug.step ?? final.steps))) of \(grouped(Int(final.steps))) steps, \(final.threads) threads, "
                + "\(grouped(Int(final.switches))) switches; \(grouped(choicesAfter)) scheduling choice\(choicesAfter == 1 ? "" : "s")")
        } else {
            print("after     NOT REPRODUCED: the minimal case, run again, did not fail with the bug (a run that is not deterministic?)")
        }
        print("runs      \(outcome.runs) candidate runs (child processes) in \(Int(seconds.rounded())) s; "
            + "parts \(outcome.partsMinimal ? "1-minimal" : "not proven minimal (budget)"), "
            + "choices \(outcome.choicesMinimal ? "1-minimal" : "not proven minimal (budget)")")
        print("wrote     \(files.scenario), \(files.schedule), \(files.json)")
        print("replay    " + replay.map(ReplayCommand.quoted).joined(separator: " "))
        guard let final, final.bugs.contains(where: { $0.title == input.title }) else { throw ExitCode(1) }
    }

    /// A new, empty directory `.candidates.XXXXXX` in `directory` (`mkdtemp`).
    /// Nil on failure (`errno` says why).
    static func newWorkDirectory(in directory: String) -> String? {
        var template = Array((directory + "/.candidates.XXXXXX").utf8CString)
        guard template.withUnsafeMutableBufferPointer({ mkdtemp($0.baseAddress!) }) != nil else { return nil }
        return String(decoding: template.dropLast().map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }

    /// `R.json` -> `R-shrunk`.
    static func defaultDirectory(for report: String) -> String {
        (report.hasSuffix(".json") ? String(report.dropLast(5)) : report) + "-shrunk"
    }
}
