import LabSync
import MMUNotifier

/// The result of a demo storm, ready to print.
struct Outcome {
    let storm: NotifierStorm
    let elapsed: Duration

    var isClean: Bool { storm.violationCount == 0 }

    func report() -> String {
        let core = storm.core
        let c = storm.counters
        var byEvent: [NotifierEvent: Int] = [:]
        var refused = 0
        for space in storm.spaces {
            let stats = space.notifiers.statistics
            byEvent.merge(stats.startsByEvent, uniquingKeysWith: +)
            refused += stats.refusedStarts
        }
        let seconds = elapsed.seconds
        var rows: [(String, String)] = [
            ("seed", "\(storm.seed)"),
            ("elapsed", fixed(seconds) + " s"),
            ("invalidations ended", "\(c.invalidations.load(ordering: .relaxed))"),
            ("non-blockable starts refused", "\(refused)"),
            ("device faults", "\(c.faults.load(ordering: .relaxed))"),
            ("fault retries (readRetry)", "\(c.faultRetries.load(ordering: .relaxed))"),
            ("registrations during the storm", "\(c.registrations.load(ordering: .relaxed))"),
        ]
        for event in NotifierEvent.allCases where byEvent[event, default: 0] > 0 {
            rows.append(("  starts: \(event)", "\(byEvent[event]!)"))
        }
        rows += [
            ("stale translations", "\(c.stale.load(ordering: .relaxed))"),
            ("contract violations", "\(core.contractViolations.count)"),
            ("context violations", "\(core.sync.contextViolations.count)"),
        ]
        let width = rows.map(\.0.count).max() ?? 0
        var text = "\nSummary\n"
        for (key, value) in rows {
            text += "  " + key.padded(to: width) + "  " + value + "\n"
        }
        let findings = storm.staleDescriptions
            + core.contractViolations.snapshot.prefix(10).map(\.description)
            + core.sync.contextViolations.snapshot.prefix(10).map(\.description)
        if findings.isEmpty {
            text += "\nNo violations: every device dropped every translation an invalidation made stale.\n"
        } else {
            text += "\nViolations (replay with --seed \(storm.seed)):\n"
            for finding in findings.prefix(20) { text += "  - \(finding)\n" }
        }
        return text
    }
}
