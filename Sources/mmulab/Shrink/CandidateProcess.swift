import Foundation
import LabSync
import ReclaimLab

#if canImport(Glibc)
import Glibc
#endif

/// Runs a shrink's candidates as `mmulab run` child processes, one at a
/// time: the candidate's scenario and schedule go to files in `directory`,
/// the child writes its JSON report (and recorded choices) there, and the
/// outcome is read back.
///
/// Why child processes and not `ScenarioRunner.run` in this process: a
/// shrunk scenario is new input, and a candidate may deadlock (its threads
/// then stay parked for ever, with their plugin instances loaded), crash
/// (a plugin's segfault, a precondition), or loop without a scheduling point
/// (no step limit can stop it); a process is the unit that can be killed
/// and cleaned up after, as the campaign's runs are. And the child's command
/// line is the minimal case's replay command: what the shrink tested is
/// what the user reruns. A run costs a process start (about 0.1 s) more.
///
/// Every run is bounded twice: by its `--stop-at-step` (and the step limit
/// that comes with it: deterministic), and by `timeout` seconds of real
/// time (a backstop: a candidate killed there counts as not failing, the
/// one way a shrink can depend on the machine's speed).
struct CandidateProcess {
    let executable: String
    let environment: [String]
    /// Where the candidates' files go (replaced run after run); absolute.
    let directory: String
    let seed: UInt64
    let strategy: ScheduleStrategy
    let injections: [Injection]
    let pluginDirectory: String?
    let timeout: Double

    /// Sleeps between polls of the child (through LabSync, as every sleep outside it).
    private let scheduler = FreeRunningScheduler()

    init(
        executable: String, environment: [String], directory: String, seed: UInt64, strategy: ScheduleStrategy, injections: [Injection],
        pluginDirectory: String?, timeout: Double
    ) {
        precondition(directory.hasPrefix("/"), "candidates' files need an absolute directory (a path never taken for a flag)")
        self.executable = executable
        self.environment = environment
        self.directory = directory
        self.seed = seed
        self.strategy = strategy
        self.injections = injections
        self.pluginDirectory = pluginDirectory
        self.timeout = timeout
    }

    /// The files of one run.
    struct Files {
        var scenario: String
        var schedule: String
        var json: String
        var log: String
        var recorded: String
    }

    var candidateFiles: Files {
        Files(
            scenario: directory + "/candidate.yaml", schedule: directory + "/candidate.schedule", json: directory + "/candidate.json",
            log: directory + "/candidate.log", recorded: directory + "/candidate.recorded.schedule")
    }

    /// The arguments after `mmulab` that run `candidate` from `files` (the
    /// scenario file first, as a replay command has it: `directory` is absolute).
    func arguments(_ candidate: ShrinkCandidate, _ files: Files, json: Bool = true) -> [String] {
        var words = ["run", files.scenario, "--seed", String(seed)]
        if candidate.choices != nil {
            words += ["--schedule-file", files.schedule]
        } else {
            words += ["--schedule", strategy.description]
        }
        words += ["--stop-at-step", String(candidate.stopAtStep)]
        for injection in injections { words += ["--inject", injection.rawValue] }
        if let pluginDirectory { words += ["--plugin-directory", pluginDirectory] }
        if json { words += ["--json", files.json] }
        if candidate.recordsChoices { words += ["--record-schedule", files.recorded] }
        return words
    }

    /// Writes the candidate's scenario and schedule to `files`; the
    /// schedule's comments name the threads in `threadNames` and say `comments`.
    func write(
        _ candidate: ShrinkCandidate, to files: Files, threadNames: [String] = [],
        comments: [String] = ["the scheduling choices of a candidate of mmulab shrink"]
    ) throws {
        try ScenarioWriter.yaml(candidate.scenario).write(toFile: files.scenario, atomically: true, encoding: .utf8)
        if let choices = candidate.choices {
            let text = ScheduleFile(strategy: strategy, choices: choices).text(threadNames: threadNames, comments: comments)
            try text.write(toFile: files.schedule, atomically: true, encoding: .utf8)
        }
    }

    /// Runs `candidate`; nil unless the child ended with status 0 or 1 and its report reads.
    func run(_ candidate: ShrinkCandidate) -> CandidateOutcome? {
        let files = candidateFiles
        for stale in [files.json, files.recorded] { unlink(stale) }
        do {
            try write(candidate, to: files)
        } catch {
            return nil
        }
        guard let status = execute(arguments(candidate, files), log: files.log), status == .exited(0) || status == .exited(1) else { return nil }
        guard var outcome = Self.outcome(ofReport: files.json) else { return nil }
        if candidate.recordsChoices {
            guard let data = FileManager.default.contents(atPath: files.recorded),
                let file = try? ScheduleFile(parsing: String(decoding: data, as: UTF8.self))
            else { return nil }
            outcome.recorded = file.choices
        }
        return outcome
    }

    /// Runs `mmulab arguments` to its end (or its timeout: nil), its output
    /// going to `log`. A stop signal kills the child and ends this process
    /// with 128 + the signal.
    func execute(_ arguments: [String], log: String) -> Termination? {
        let child: ChildProcess
        do {
            child = try ChildProcess(executable: executable, arguments: arguments, environment: environment, outputPath: log)
        } catch {
            return nil
        }
        let deadline = ContinuousClock.now + .milliseconds(Int64(timeout * 1_000))
        while true {
            if let termination = child.poll() { return termination }
            if let signal = StopSignals.received {
                child.kill()
                _ = child.wait()
                writeToStandardError("mmulab shrink: stopped by signal \(signal); nothing written\n")
                exit(StopSignals.exitStatus(for: signal))
            }
            if ContinuousClock.now >= deadline {
                child.kill()
                _ = child.wait()
                return nil
            }
            scheduler.sleep(for: .milliseconds(5))
        }
    }

    /// The bugs and schedule figures of a run's JSON report (nil if it does not read as one).
    static func outcome(ofReport path: String) -> CandidateOutcome? {
        guard let data = FileManager.default.contents(atPath: path),
            let json = (try? JSONSerialization.jsonObject(with: data)) as? [String: Any],
            let schedule = json["schedule"] as? [String: Any], let steps = schedule["steps"] as? Int, let threads = schedule["threads"] as? Int,
            let switches = schedule["switches"] as? Int, let bugs = json["bugs"] as? [[String: Any]]
        else { return nil }
        let seen = bugs.compactMap { bug -> CandidateOutcome.BugSeen? in
            guard let title = bug["title"] as? String else { return nil }
            let first = bug["first"] as? [String: Any]
            return CandidateOutcome.BugSeen(
                title: title, step: (first?["step"] as? Int).flatMap { UInt64(exactly: $0) }, seconds: first?["seconds"] as? Double)
        }
        var outcome = CandidateOutcome(bugs: seen, steps: UInt64(max(steps, 0)), threads: threads, switches: UInt64(max(switches, 0)))
        outcome.threadNames = schedule["thread_names"] as? [String] ?? []
        return outcome
    }
}

/// Real time since it was made, for the shrink's summary (outside any run).
struct Stopwatch {
    private let start = ContinuousClock.now
    var seconds: Double {
        let elapsed = (ContinuousClock.now - start).components
        return Double(elapsed.seconds) + Double(elapsed.attoseconds) / 1e18
    }
}
