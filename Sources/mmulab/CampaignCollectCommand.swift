import ArgumentParser
import BugDatabase
import Foundation
import ReclaimLab

#if canImport(Glibc)
import Glibc
#endif

/// `mmulab campaign collect DIR`: the summary of a campaign from its
/// directory, finished or still running, recorded in the bug database.
struct CampaignCollectCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "collect",
        abstract: "Summarise a campaign from its directory (finished or still running) and record it in the bug database.",
        discussion: """
            DIR is a campaign directory (the `campaign` line `mmulab campaign` prints). The \
            summary is the one the campaign prints when it ends, from the runs that have \
            finished; collecting again later (or after a --no-wait submission ends) records \
            the runs that finished since, and nothing twice.

            Exit status: as `mmulab campaign` (0 no run failed, 1 a run failed, 2 bad input); \
            3 while a Slurm campaign still has runs queued or running (--wait waits for them).
            """
    )

    @Argument(help: ArgumentHelp("The campaign directory.", valueName: "dir"))
    var directory: String

    @Option(help: ArgumentHelp("The bug database (default: the one the campaign was started with).", valueName: "file"))
    var db: String?

    @Flag(help: "Wait until a Slurm campaign's job has ended before summarising it.")
    var wait = false

    @Option(help: "Write the campaign's summary as JSON to this file.")
    var json: String?

    /// Exit status of a campaign collected while its runs go on.
    static let stillRunningStatus: Int32 = 3

    func run() throws {
        let (jsonDestination, _) = try RunSession.destinations(json: json, report: nil)
        let human: Int32 = jsonDestination?.isStandardOutput == true ? STDERR_FILENO : STDOUT_FILENO
        let campaign: CampaignDirectory
        let plan: CampaignPlan
        let database: BugDatabase
        do {
            campaign = try CampaignDirectory.open(absolutePath(directory))
            plan = try CampaignPlan.load(from: campaign)
            database = try BugDatabase(path: db.map(absolutePath) ?? plan.database)
        } catch let error as any CustomStringConvertible {
            writeToStandardError("mmulab: \(error)\n")
            throw ExitCode(2)
        }
        StopSignals.install(secondEndsProcess: false)
        var records: [RunRecord?]
        var running = false
        if plan.engine == "slurm" {
            guard let job = plan.jobID else {
                writeToStandardError("mmulab: \(campaign.path): the campaign was never submitted to Slurm (no job id in plan.json)\n")
                throw ExitCode(2)
            }
            let engine = SlurmEngine(plan: plan, directory: campaign)
            if wait {
                let line = ProgressLine(descriptor: human)
                _ = engine.follow(job) { done in line.update("campaign  slurm job \(job): \(done)/\(plan.runs.count) runs done") }
                line.finish()
            }
            records = engine.records(job: job)
            running = engine.isActive(job) == true
        } else {
            // A local campaign that was interrupted, or is still running in
            // another process: the runs that left a status.
            records = plan.runs.enumerated().map { campaign.record(of: $0.element, index: $0.offset) }
        }
        let elapsed = campaign.lastStatusTime(runs: plan.runs.count).map { max(0, $0 - plan.createdAt.timeIntervalSince1970) } ?? 0
        let finished = records.compactMap { $0 }.count
        let report = CampaignReport(
            plan: plan, records: records, elapsedSeconds: elapsed,
            interrupted: !running && finished < plan.runs.count && StopSignals.received == nil, running: running)
        try Self.conclude(
            report: report, records: records, plan: plan, campaign: campaign, database: database, json: jsonDestination, human: human)
    }

    /// Prints the summary, writes the JSON, records the campaign and its
    /// finished runs in the bug database, and ends with the campaign's exit
    /// status (or as the stop signal that interrupted it would).
    ///
    /// The JSON and the database are written on interruption too: what ran
    /// is not lost.
    static func conclude(
        report: CampaignReport, records: [RunRecord?], plan: CampaignPlan, campaign: CampaignDirectory, database: BugDatabase,
        json: ReportDestination?, human: Int32
    ) throws {
        writeText(report.text() + "\n", to: human)
        var written = true
        if let json {
            do {
                try json.write(report.jsonText())
            } catch {
                writeToStandardError("mmulab: \(error)\n")
                written = false
            }
        }
        let recorder = CampaignRecorder(database: database, plan: plan, directory: campaign)
        do {
            let known = Set(try database.bugs().map(\.title))
            let finished = records.enumerated().compactMap { index, record in record.map { (index: index, record: $0) } }
            try recorder.recordRuns(finished, report: report)
            try recorder.recordCampaign(finished: report.running ? nil : Date(), interrupted: report.interrupted)
            writeText(bugLine(database: database, campaign: campaign, known: known), to: human)
        } catch {
            writeToStandardError("mmulab: \(error)\n")
            written = false
        }
        if let stopped = StopSignals.received {
            signal(stopped, SIG_DFL)
            raise(stopped)  // end as the signal would have: the shell sees it
        }
        if report.exitStatus != 0 { throw ExitCode(report.exitStatus) }
        if !written { throw ExitCode(2) }
        if report.running { throw ExitCode(stillRunningStatus) }
    }

    /// One line on what the bug database now holds of this campaign: its
    /// bugs, the new ones among them, and where to look.
    private static func bugLine(database: BugDatabase, campaign: CampaignDirectory, known: Set<String>) -> String {
        guard let bugs = try? database.bugs(campaign: campaign.name) else { return "" }
        let fresh = bugs.filter { !known.contains($0.title) }.count
        let list = "mmulab bugs --db \(ReplayCommand.quoted(database.path))"
        if bugs.isEmpty { return "bugs      none in this campaign (\(list))\n" }
        return "bugs      \(bugs.count) in this campaign, \(fresh) new: \(list)\n"
    }
}
