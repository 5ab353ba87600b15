import BugDatabase
import Foundation
import ReclaimLab

/// Records a campaign, its runs and the bugs their reports name in the bug
/// database (`BugDatabase`), from the campaign's directory: the same for
/// the local engine and for a Slurm campaign collected later.
struct CampaignRecorder {
    let database: BugDatabase
    let plan: CampaignPlan
    let directory: CampaignDirectory

    /// The campaign's entry (its end, if it ended).
    func recordCampaign(finished: Date?, interrupted: Bool) throws(BugDatabase.Failure) {
        try database.record(
            CampaignEntry(
                id: directory.name, engine: plan.engine, startedAt: plan.createdAt, finishedAt: finished, scenarios: plan.scenarios.joined(separator: " "),
                seeds: "\(plan.firstSeed)..\(plan.lastSeed)", arguments: plan.runArguments.map(ReplayCommand.quoted).joined(separator: " "),
                plugins: plan.plugins.joined(separator: " "),
                directory: directory.path, jobID: plan.jobID, interrupted: interrupted))
    }

    /// Every finished run and its bugs. A crash or a hang is a bug of its
    /// own, titled by what ended the run.
    func recordRuns(_ records: [(index: Int, record: RunRecord)], report: CampaignReport) throws(BugDatabase.Failure) {
        for (index, record) in records {
            let run = RunEntry(
                campaignID: directory.name, scenario: record.run.scenario, seed: record.run.seed, outcome: record.outcome.kind,
                seconds: record.seconds, findingsTotal: findingsTotal(record.outcome), replay: report.replayCommand(record.run),
                detail: record.outcome.isClean ? nil : report.detail(record))
            try database.record(run, bugs: bugs(of: record, index: index, report: report))
        }
    }

    private func findingsTotal(_ outcome: RunOutcome) -> Int? {
        if case .findings(let total, _) = outcome { return total }
        return nil
    }

    /// The bugs the run's report names; for a crash or a hang, one bug
    /// that says so.
    private func bugs(of record: RunRecord, index: Int, report: CampaignReport) -> [BugObservation] {
        switch record.outcome {
        case .clean, .skipped, .badInput: return []
        case .crashed(let signal):
            return [crash("crash: \(signalName(signal)) in \(record.run.scenario)", record, report)]
        case .exited(let status):
            return [crash("crash: exit status \(status) in \(record.run.scenario)", record, report)]
        case .pluginOops(let signal):
            // The oops names the plugin and the callback: that is the bug, whatever the scenario.
            let headline = RunLog.headline(record.logExcerpt) ?? "plugin oops\(signal.map { ": \($0)" } ?? "")"
            return [crash("crash: \(headline)", record, report)]
        case .notStarted(let reason):
            return [crash("crash: \(reason)", record, report)]
        case .hung:
            return [crash("hang: \(record.run.scenario) killed at its timeout", record, report)]
        case .findings:
            guard let data = FileManager.default.contents(atPath: directory.resultPath(index)),
                let object = try? JSONSerialization.jsonObject(with: data) as? [String: Any], let bugs = object["bugs"] as? [[String: Any]]
            else { return [] }
            return bugs.compactMap { bug in
                guard let title = bug["title"] as? String, let invariant = bug["invariant"] as? String else { return nil }
                let first = bug["first"].flatMap { try? JSONSerialization.data(withJSONObject: $0, options: [.prettyPrinted, .sortedKeys]) }
                return BugObservation(
                    title: title, invariant: invariant, pluginInstance: bug["plugin_instance"] as? String, count: bug["count"] as? Int ?? 1,
                    firstSeenSeconds: bug["first_seen_seconds"] as? Double, evidence: first.map { String(decoding: $0, as: UTF8.self) } ?? "{}")
            }
        }
    }

    private func crash(_ title: String, _ record: RunRecord, _ report: CampaignReport) -> BugObservation {
        let evidence = (try? JSONSerialization.data(
            withJSONObject: ["log": record.logExcerpt, "replay": report.replayCommand(record.run)], options: [.prettyPrinted, .sortedKeys]))
            .map { String(decoding: $0, as: UTF8.self) } ?? "{}"
        return BugObservation(title: title, invariant: record.outcome.kind, pluginInstance: nil, count: 1, firstSeenSeconds: nil, evidence: evidence)
    }

    private func signalName(_ signal: Int32) -> String {
        switch signal {
        case 4: "SIGILL"
        case 6: "SIGABRT"
        case 7: "SIGBUS"
        case 8: "SIGFPE"
        case 9: "SIGKILL"
        case 11: "SIGSEGV"
        case 15: "SIGTERM"
        default: "signal \(signal)"
        }
    }
}
