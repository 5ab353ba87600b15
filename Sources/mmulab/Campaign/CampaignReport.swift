import Foundation
import ReclaimLab

/// Counts of run outcomes. `crashed` includes runs that exited with a
/// status `mmulab run` never gives and runs that could not be started.
struct OutcomeTotals {
    var runs = 0, clean = 0, skipped = 0, findings = 0, crashed = 0, hung = 0, badInput = 0

    /// Runs that failed: findings, crashes, hangs (not bad input).
    var failed: Int { findings + crashed + hung }

    mutating func add(_ outcome: RunOutcome) {
        runs += 1
        switch outcome {
        case .clean: clean += 1
        case .skipped: skipped += 1
        case .findings: findings += 1
        case .badInput: badInput += 1
        case .crashed, .pluginOops, .exited, .notStarted: crashed += 1
        case .hung: hung += 1
        }
    }

    var json: [String: Any] {
        ["runs": runs, "clean": clean, "skipped": skipped, "findings": findings, "crashed": crashed, "hung": hung, "bad_input": badInput]
    }
}

/// A finished (or interrupted) campaign: what was asked, every run's
/// record, and the totals. Renders the summary table and the JSON summary.
struct CampaignReport {
    let scenarios: [String]
    let seeds: ClosedRange<UInt64>
    let jobs: Int
    let duration: Double?
    let pluginDirectory: String?
    /// `--plugin` and `--plugin-options`, passed to every run.
    let plugins: [String]
    let pluginOptions: String
    /// `--schedule`, passed to every run (nil: free-running).
    var schedule: String? = nil
    /// `--kernel-hand-over`, passed to every run with the schedule.
    var kernelHandOver = false
    let records: [RunRecord]
    let plannedRuns: Int
    let elapsedSeconds: Double
    let interrupted: Bool
    /// A campaign collected while its runs still go on (Slurm).
    var running = false

    func totals(for scenario: String? = nil) -> OutcomeTotals {
        var totals = OutcomeTotals()
        for record in records where scenario == nil || record.run.scenario == scenario { totals.add(record.outcome) }
        return totals
    }

    /// 1 if any run failed (findings, crashed, hung); else 2 if any run
    /// refused its input; else 0.
    var exitStatus: Int32 {
        let all = totals()
        return all.failed > 0 ? 1 : all.badInput > 0 ? 2 : 0
    }

    /// The command that replays `run` on its own.
    func replayCommand(_ run: CampaignRun) -> String {
        var command = ReplayCommand(
            scenario: run.scenario, seed: run.seed, seconds: duration, plugins: plugins, pluginOptions: pluginOptions, pluginDirectory: pluginDirectory)
        command.schedule = schedule
        command.kernelHandOver = kernelHandOver
        return command.commandLine
    }

    /// The summary table: one line per run that was not clean, then the
    /// totals per scenario and over all.
    func text() -> String {
        let all = totals()
        let seedText = seeds.count == 1 ? "seed \(seeds.lowerBound)" : "seeds \(seeds.lowerBound)..\(seeds.upperBound)"
        let scenarioText = scenarios.count == 1 ? "1 scenario" : "\(scenarios.count) scenarios"
        var lines = ["campaign: \(all.runs) of \(plannedRuns) runs (\(scenarioText), \(seedText)), "
            + "\(jobs) at a time, \(fixed(elapsedSeconds)) s" + (interrupted ? ", INTERRUPTED" : "")]
        let bad = records.filter { !$0.outcome.isClean }
        if !bad.isEmpty {
            lines.append("")
            let rows = [["scenario", "seed", "outcome", "first finding / log", "replay"]]
                + bad.map { [$0.run.scenario, String($0.run.seed), label($0.outcome), clipped(detail($0), to: 72), replayCommand($0.run)] }
            lines += table(rows)
        }
        lines.append("")
        // The skipped column only when a run skipped: it is rare, and the
        // table stays as it always was for campaigns that check reads.
        let skips = all.skipped > 0
        let header = ["scenario", "runs", "clean"] + (skips ? ["skipped"] : []) + ["findings", "crashed", "hung", "bad input"]
        func row(_ name: String, _ t: OutcomeTotals) -> [String] {
            [name] + ([t.runs, t.clean] + (skips ? [t.skipped] : []) + [t.findings, t.crashed, t.hung, t.badInput]).map(String.init)
        }
        let perScenario = scenarios.map { row($0, totals(for: $0)) }
        let sum = row("all", all)
        lines += table([header] + perScenario + (scenarios.count > 1 ? [sum] : []), rightAligned: 1...)
        lines.append("")
        var result = all.failed > 0 ? "\(all.failed) of \(all.runs) runs failed"
            : all.badInput > 0 ? "\(all.badInput) of \(all.runs) runs refused their input"
            : all.skipped > 0 ? "no run failed, but \(all.skipped) of \(all.runs) checked no read (SKIP: they prove nothing)"
            : "every run clean"
        if interrupted { result = "interrupted after \(all.runs) of \(plannedRuns) runs; " + (all.runs == 0 ? "none finished" : result) }
        if running && !interrupted { result = "still running: \(all.runs) of \(plannedRuns) runs finished; " + (all.runs == 0 ? "none yet" : result) }
        lines.append("result: " + result)
        return lines.joined(separator: "\n")
    }

    /// The summary as JSON.
    func jsonText() throws -> String {
        var runs: [[String: Any]] = []
        for record in records {
            var entry: [String: Any] = [
                "scenario": record.run.scenario, "seed": NSNumber(value: record.run.seed),
                "outcome": record.outcome.kind, "seconds": record.seconds,
            ]
            switch record.outcome {
            case .findings(let total, let first):
                entry["findings_total"] = total.map { NSNumber(value: $0) } ?? NSNull()
                entry["first_finding"] = first ?? NSNull()
            case .crashed(let signal): entry["signal"] = Int(signal)
            case .pluginOops(let signal):
                entry["plugin_oops"] = true
                entry["signal"] = signal ?? NSNull()
            case .exited(let status): entry["exit_status"] = Int(status)
            case .notStarted(let reason): entry["error"] = reason
            case .clean, .skipped, .badInput, .hung: break
            }
            if !record.outcome.isClean && !record.outcome.isSkipped {
                entry["log_excerpt"] = record.logExcerpt
                entry["replay"] = replayCommand(record.run)
            }
            runs.append(entry)
        }
        let summary: [String: Any] = [
            "clean": exitStatus == 0 && !interrupted && !running, "interrupted": interrupted, "running": running,
            "scenarios": scenarios,
            "seeds": ["first": NSNumber(value: seeds.lowerBound), "last": NSNumber(value: seeds.upperBound)],
            "jobs": jobs, "duration_seconds": duration.map { NSNumber(value: $0) } ?? NSNull(),
            "elapsed_seconds": elapsedSeconds, "runs_planned": plannedRuns,
            "totals": totals().json,
            "per_scenario": scenarios.map { name in totals(for: name).json.merging(["scenario": name]) { $1 } },
            "runs": runs,
        ]
        let data = try JSONSerialization.data(withJSONObject: summary, options: [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes])
        return String(decoding: data, as: UTF8.self) + "\n"
    }


    private func label(_ outcome: RunOutcome) -> String {
        switch outcome {
        case .clean: "clean"
        case .skipped: "skipped: no read checked"
        case .findings(let total, _): total.map { "findings (\($0))" } ?? "findings"
        case .badInput: "bad input"
        case .crashed(let signal): "crashed (signal \(signal))"
        case .pluginOops(let signal): "crashed (plugin oops\(signal.map { ", \($0)" } ?? ""))"
        case .exited(let status): "crashed (exit \(status))"
        case .notStarted: "crashed (not started)"
        case .hung(let seconds): "hung (killed at \(fixed(seconds)) s)"
        }
    }

    func detail(_ record: RunRecord) -> String {
        switch record.outcome {
        case .findings(_, let first?): first
        case .notStarted(let reason): reason
        default: RunLog.headline(record.logExcerpt) ?? "(no output)"
        }
    }

    private func table(_ rows: [[String]], rightAligned: PartialRangeFrom<Int>? = nil) -> [String] {
        let widths = rows[0].indices.map { column in rows.map { $0[column].count }.max() ?? 0 }
        return rows.map { row in
            row.indices.map { column in
                let isLast = column == row.count - 1
                if let rightAligned, rightAligned.contains(column) { return row[column].leftPadded(to: widths[column]) }
                return isLast ? row[column] : row[column].padded(to: widths[column])
            }.joined(separator: "  ")
        }
    }

    private func clipped(_ text: String, to width: Int) -> String {
        text.count <= width ? text : String(text.prefix(width - 3)) + "..."
    }
}

extension CampaignReport {
    /// The report of the campaign `plan` describes, from its runs' records
    /// (by index in `plan.runs`; nil for a run that did not finish).
    init(plan: CampaignPlan, records: [RunRecord?], elapsedSeconds: Double, interrupted: Bool, running: Bool = false) {
        self.init(
            scenarios: plan.scenarios, seeds: plan.seeds, jobs: plan.jobs, duration: plan.duration, pluginDirectory: plan.pluginDirectory,
            plugins: plan.plugins, pluginOptions: plan.pluginOptions, schedule: plan.schedule, records: records.compactMap { $0 },
            plannedRuns: plan.runs.count, elapsedSeconds: elapsedSeconds, interrupted: interrupted, running: running)
        kernelHandOver = plan.kernelHandOver == true
    }
}

/// findings_total and the first bug (its title, and how many bugs there
/// are) of the run report (`mmulab run --json`) at `path`; for a report
/// from before bugs, the first finding (`invariant: detail`). nil if it is
/// missing or not one.
/// The verdict of a run's JSON report (`clean`, `skip`, `fail`), nil if unreadable.
func readRunVerdict(_ path: String) -> String? {
    guard let data = FileManager.default.contents(atPath: path),
          let object = try? JSONSerialization.jsonObject(with: data) as? [String: Any]
    else { return nil }
    return object["verdict"] as? String
}

func readRunFindings(_ path: String) -> (total: Int, first: String?)? {
    guard let data = FileManager.default.contents(atPath: path),
          let object = try? JSONSerialization.jsonObject(with: data) as? [String: Any],
          let total = object["findings_total"] as? Int
    else { return nil }
    if let bugs = object["bugs"] as? [[String: Any]], let title = bugs.first?["title"] as? String {
        return (total, bugs.count == 1 ? title : "\(title) (and \(bugs.count - 1) more bug\(bugs.count == 2 ? "" : "s"))")
    }
    let first = (object["findings"] as? [[String: Any]])?.first.map { finding in
        "\(finding["invariant"] as? String ?? "?"): \(finding["detail"] as? String ?? "")"
    }
    return (total, first)
}

