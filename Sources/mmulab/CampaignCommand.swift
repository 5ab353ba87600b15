import ArgumentParser
import BugDatabase
import Foundation
import LabSync
import ReclaimLab

#if canImport(Glibc)
import Glibc
#endif

/// `mmulab campaign`: runs many seeds (`campaign run`, the default) and
/// collects a campaign a cluster ran (`campaign collect`).
struct CampaignCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "campaign",
        abstract: "Run scenarios over a range of seeds, each run a process (or a batch job) of its own, and report the runs that failed.",
        subcommands: [CampaignRunCommand.self, CampaignCollectCommand.self],
        defaultSubcommand: CampaignRunCommand.self
    )
}

struct CampaignRunCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "run",
        abstract: "Run scenarios over a range of seeds (the default: `mmulab campaign NAME... --seeds A..B`).",
        discussion: """
            Every (scenario, seed) pair runs as `mmulab run NAME --seed S` in a child process \
            of its own (its own process group), up to --jobs at a time, so a plugin that crashes \
            or hangs costs one run, not the campaign. A run that outlives --timeout is killed and \
            counted as hung; one killed by a signal counts as crashed. The summary lists every \
            run that was not clean with the command that replays it, then the totals per scenario.

            Every scenario is read and checked before anything runs. Default timeout: \
            3 x --duration + 30 s; without --duration, 3 x the scenario's length + 30 s and at \
            least 300 s. Ctrl-C kills the running children.

            Everything is kept in a campaign directory inside --output-dir (plan.json, each \
            run's report, status and log), and every run and the bugs it found are recorded in \
            the bug database (--db; `mmulab bugs` lists them across campaigns).

            --engine slurm hands the runs to a Slurm cluster as one job array (one task per \
            run, or --runs-per-task runs each; at most --jobs tasks at once; each run with the \
            timeout): --output-dir, this mmulab and the plugins must be on a filesystem every \
            node shares. Slurm starts tasks in scheduling passes a second or more apart, so \
            for runs of a few seconds several runs per task cost less. The summary is the same \
            as the local one. --no-wait returns after submitting; `mmulab campaign collect DIR` \
            summarises it later.

            Exit status: 0 no run failed (each clean, or skipped: it checked no read, so it \
            proves nothing, and the summary counts it apart), 1 a run failed (findings, crashed, hung), \
            2 bad input (a bad scenario or flag, or runs that refused their input).
            """
    )

    enum Engine: String, ExpressibleByArgument, CaseIterable {
        case local, slurm
    }

    @Option(help: "Who runs the runs: local (child processes of this one) or slurm (a job array).")
    var engine: Engine = .local

    @Option(help: ArgumentHelp("Where campaigns keep their results and their bug database.", valueName: "dir"))
    var outputDir: String = "mmulab-campaigns"

    @Option(help: ArgumentHelp("The bug database (default: bugs.sqlite in --output-dir).", valueName: "file"))
    var db: String?

    @Flag(help: "With --engine slurm: return after submitting, with the job id (`mmulab campaign collect DIR` later).")
    var noWait = false

    @Option(help: "With --engine slurm: the partition (sbatch --partition).")
    var partition: String?

    @Option(help: "With --engine slurm: the account (sbatch --account).")
    var account: String?

    @Option(
        help: ArgumentHelp(
            "With --engine slurm: runs each array task does one after the other (default 1, or enough to keep the array within 1000 tasks).",
            valueName: "n"), transform: { try ArgumentValues.count($0, in: 1...10_000) })
    var runsPerTask: Int?

    @Option(help: ArgumentHelp("With --engine slurm: any other sbatch option, as one word (--sbatch-arg=--qos=short); repeatable.", valueName: "option"))
    var sbatchArg: [String] = []

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

    @OptionGroup var bundledPlugins: PluginDirectoryOption

    @Option(help: ArgumentHelp("Add a plugin (a .so path or a bundled name) to every run, as `mmulab run --plugin`; repeatable.", valueName: "path"))
    var plugin: [String] = []

    @Option(help: "Options for the plugins --plugin adds.")
    var pluginOptions: String = ""

    @Option(help: "Write the campaign's summary as JSON to this file.")
    var json: String?

    @OptionGroup var scheduling: ScheduleOption

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
        if let pluginDirectory = bundledPlugins.pluginDirectory {
            var info = stat()
            guard stat(pluginDirectory, &info) == 0, info.st_mode & S_IFMT == S_IFDIR else {
                throw ValidationError("--plugin-directory \(pluginDirectory): not a directory")
            }
        }
        if scheduling.kernelHandOver && scheduling.schedule == nil {
            throw ValidationError("--kernel-hand-over applies to a deterministic campaign: add --schedule")
        }
        if engine == .local {
            if noWait { throw ValidationError("--no-wait needs --engine slurm") }
            if partition != nil || account != nil || !sbatchArg.isEmpty || runsPerTask != nil {
                throw ValidationError("--partition, --account, --sbatch-arg and --runs-per-task need --engine slurm")
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
        let runCount = names.count * Int(range.upperBound - range.lowerBound + 1)
        // Absolute paths: a cluster's nodes start the runs from elsewhere.
        let output = absolutePath(outputDir)
        let campaign: CampaignDirectory
        var plan = CampaignPlan(
            engine: engine.rawValue, scenarios: names, firstSeed: range.lowerBound, lastSeed: range.upperBound, jobs: jobs, duration: duration,
            pluginDirectory: bundledPlugins.pluginDirectory.map(absolutePath), plugins: plugin.map { $0.contains("/") ? absolutePath($0) : $0 },
            pluginOptions: pluginOptions, timeouts: timeouts, executable: executable, database: absolutePath(db ?? outputDir + "/bugs.sqlite"),
            createdAt: Date(), workingDirectory: FileManager.default.currentDirectoryPath, schedule: scheduling.schedule?.strategy.description,
            kernelHandOver: scheduling.kernelHandOver ? true : nil, runsPerTask: runsPerTask ?? SlurmEngine.defaultRunsPerTask(runs: runCount),
            jobID: nil)
        let database: BugDatabase
        do {
            campaign = try CampaignDirectory.create(in: output)
            database = try BugDatabase(path: plan.database)
            try plan.save(in: campaign)
        } catch let error as any CustomStringConvertible {
            writeToStandardError("mmulab: \(error)\n")
            throw ExitCode(2)
        }
        let recorder = CampaignRecorder(database: database, plan: plan, directory: campaign)
        StopSignals.install(secondEndsProcess: false)
        writeText("campaign  \(campaign.path)\n", to: human)

        let started = ContinuousClock.now
        let line = ProgressLine(descriptor: human)
        var records: [RunRecord?]
        switch engine {
        case .local:
            try? recorder.recordCampaign(finished: nil, interrupted: false)
            let frozenTimeouts = timeouts
            let runner = CampaignRunner(
                executable: executable, environment: processEnvironment(), runs: plan.runs, jobs: jobs, extraArguments: plan.runArguments,
                timeout: { frozenTimeouts[$0] ?? 300 }, directory: campaign, readFindings: readRunFindings)
            records = runner.execute { done, failed in
                line.update("campaign  \(done)/\(plan.runs.count) runs done  \(failed) failed")
            }
        case .slurm:
            var slurm = SlurmEngine(plan: plan, directory: campaign)
            if let partition { slurm.batchOptions.append("--partition=\(partition)") }
            if let account { slurm.batchOptions.append("--account=\(account)") }
            slurm.batchOptions += sbatchArg
            do {
                plan.jobID = try slurm.submit()
                try plan.save(in: campaign)
            } catch let error as any CustomStringConvertible {
                writeToStandardError("mmulab: \(error)\n")
                throw ExitCode(2)
            }
            let job = plan.jobID!
            let submitted = CampaignRecorder(database: database, plan: plan, directory: campaign)
            try? submitted.recordCampaign(finished: nil, interrupted: false)
            let tasks = slurm.taskCount
            writeText("slurm     job \(job), \(tasks) array task\(tasks == 1 ? "" : "s")"
                + (plan.runsPerTask > 1 ? " of up to \(plan.runsPerTask) runs" : "") + "\n", to: human)
            if noWait {
                writeText("collect   mmulab campaign collect \(ReplayCommand.quoted(campaign.path))\n", to: human)
                return
            }
            let engine = SlurmEngine(plan: plan, directory: campaign, batchOptions: slurm.batchOptions)
            let followed = engine.follow(job) { done in
                line.update("campaign  slurm job \(job): \(done)/\(plan.runs.count) runs done")
            }
            if !followed {
                // Ctrl-C stops the campaign, as it does the local engine's
                // (--no-wait leaves a job running on its own).
                line.finish()
                let cancelled = engine.cancel(job)
                writeText(cancelled ? "cancelled slurm job \(job)\n" : "could not cancel slurm job \(job): scancel \(job)\n", to: human)
            }
            records = engine.records(job: job)
        }
        line.finish()
        let report = CampaignReport(
            plan: plan, records: records, elapsedSeconds: (ContinuousClock.now - started).seconds, interrupted: StopSignals.received != nil)
        try CampaignCollectCommand.conclude(report: report, records: records, plan: plan, campaign: campaign, database: database, json: jsonDestination, human: human)
    }

    /// The time a run of `scenario` gets before it counts as hung.
    private func runTimeout(for scenario: Scenario) -> Double {
        if let timeout { return timeout }
        if let duration { return duration * 3 + 30 }
        if case .seconds(let seconds) = scenario.length { return max(300, seconds * 3 + 30) }
        return 300
    }
}

/// An absolute form of `path` (relative to the working directory).
func absolutePath(_ path: String) -> String {
    if path.hasPrefix("/") { return path }
    let cwd = FileManager.default.currentDirectoryPath
    return path == "." ? cwd : cwd + "/" + (path.hasPrefix("./") ? String(path.dropFirst(2)) : path)
}
