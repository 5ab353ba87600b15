import MMUNotifier
import NotifierStormLab

extension NotifierStorm.Snapshot {
    /// The progress line while the storm runs.
    var progressText: String {
        let seconds = elapsed.seconds
        let rate = seconds > 0 ? Int(Double(invalidations) / seconds) : 0
        return "[\(fixed(seconds).leftPadded(to: 5)) s] invalidations \(invalidations) (\(rate)/s)  device faults \(faults)  violations \(violations)"
    }
}

extension NotifierStorm.Outcome {
    /// The summary `mmulab notifier-storm` prints: the counts, then each
    /// violation (at most 20) with the seed that replays the storm.
    var report: String {
        var rows: [(String, String)] = [
            ("seed", "\(seed)"),
            ("elapsed", fixed(elapsed.seconds) + " s"),
            ("invalidations ended", "\(invalidations)"),
            ("non-blockable starts refused", "\(refusedStarts)"),
            ("device faults", "\(faults)"),
            ("fault retries (readRetry)", "\(faultRetries)"),
            ("registrations during the storm", "\(registrations)"),
        ]
        for event in NotifierEvent.allCases where startsByEvent[event, default: 0] > 0 {
            rows.append(("  starts: \(event)", "\(startsByEvent[event]!)"))
        }
        rows += [
            ("stale translations", "\(staleTranslations)"),
            ("contract violations", "\(contractViolations)"),
            ("context violations", "\(contextViolations)"),
        ]
        let width = rows.map(\.0.count).max() ?? 0
        var text = "\nSummary\n"
        for (key, value) in rows {
            text += "  " + key.padded(to: width) + "  " + value + "\n"
        }
        if findings.isEmpty {
            text += "\nNo violations: every device dropped every translation an invalidation made stale.\n"
        } else {
            text += "\nViolations (replay with --seed \(seed)):\n"
            for finding in findings.prefix(20) { text += "  - \(finding)\n" }
        }
        return text
    }
}
