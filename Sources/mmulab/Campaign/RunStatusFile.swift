import Foundation
import PluginHost

#if canImport(Glibc)
import Glibc
#endif

/// How one run of a campaign ended, as a line in `results/I.status`,
/// written by whoever ran it (the local engine, or the Slurm task's
/// script) and read back to collect the campaign:
///
///     exit STATUS START END      the exit status of `mmulab run` (128 + N
///                                for a signal N; 124 or 137 when the
///                                campaign's timeout killed it), and the
///                                start and end (seconds since the epoch)
///     notstarted REASON          it could not be started
enum RunStatusFile {
    /// The line for a run the local engine finished.
    static func line(for outcome: RunOutcome, start: Double, end: Double) -> String {
        let times = "\(start) \(end)"
        switch outcome {
        case .clean, .skipped: return "exit 0 \(times)"
        case .findings: return "exit 1 \(times)"
        case .badInput: return "exit 2 \(times)"
        case .crashed(let signal): return "exit \(128 + signal) \(times)"
        case .pluginOops: return "exit \(PluginCrashReport.exitStatus) \(times)"
        case .exited(let status): return "exit \(status) \(times)"
        case .hung: return "exit 124 \(times)"
        case .notStarted(let reason): return "notstarted \(reason.replacingOccurrences(of: "\n", with: " "))"
        }
    }

    /// The outcome and duration a status file says, nil if it is missing
    /// or not one; `findings` reads the run's report for an exit status 1.
    /// `oopsSignal` reads the signal a plugin oops names, for an exit status 4.
    static func read(
        _ path: String, findings: () -> (total: Int, first: String?)?, oopsSignal: () -> String? = { nil },
        skipped: () -> Bool = { false }
    ) -> (outcome: RunOutcome, seconds: Double)? {
        guard let text = try? String(contentsOfFile: path, encoding: .utf8) else { return nil }
        let line = text.trimmingCharacters(in: .whitespacesAndNewlines)
        if line.hasPrefix("notstarted ") { return (.notStarted(reason: String(line.dropFirst("notstarted ".count))), 0) }
        let words = line.split(separator: " ")
        guard words.count >= 2, words[0] == "exit", let status = Int32(words[1]) else { return nil }
        let seconds = words.count >= 4 ? max(0, (Double(words[3]) ?? 0) - (Double(words[2]) ?? 0)) : 0
        let outcome: RunOutcome
        switch status {
        case 0: outcome = skipped() ? .skipped : .clean
        case 1:
            let found = findings()
            outcome = .findings(total: found?.total, first: found?.first)
        case 2: outcome = .badInput
        case PluginCrashReport.exitStatus: outcome = .pluginOops(signal: oopsSignal())
        case 124, 137: outcome = .hung(afterSeconds: seconds)  // coreutils timeout: timed out, or killed after its grace
        case 129...192: outcome = .crashed(signal: status - 128)
        default: outcome = .exited(status: status)
        }
        return (outcome, seconds)
    }
}

extension CampaignDirectory {
    /// Run `index`'s record, from its status file, its report and its log;
    /// nil if it left no status (still running, never run, or lost).
    func record(of run: CampaignRun, index: Int) -> RunRecord? {
        guard
            let (outcome, seconds) = RunStatusFile.read(
                statusPath(index), findings: { readRunFindings(resultPath(index)) }, oopsSignal: { RunLog.oopsSignal(in: logPath(index)) },
                skipped: { readRunVerdict(resultPath(index)) == "skip" })
        else { return nil }
        let excerpt = outcome.isClean ? [] : RunLog.excerpt(of: logPath(index), crashed: outcome.isCrash)
        return RunRecord(run: run, outcome: outcome, seconds: seconds, logExcerpt: excerpt)
    }

    /// When the last run left its status (seconds since the epoch), nil if none did.
    func lastStatusTime(runs: Int) -> Double? {
        var latest: Double? = nil
        for index in 0..<runs {
            var info = stat()
            guard stat(statusPath(index), &info) == 0 else { continue }
            let time = Double(info.st_mtim.tv_sec) + Double(info.st_mtim.tv_nsec) / 1e9
            latest = max(latest ?? time, time)
        }
        return latest
    }
}
