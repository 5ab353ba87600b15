import Foundation
import Testing

/// `mmulab notifier-storm`, whose storm lives in the NotifierStormLab library:
/// the command still runs it, prints its summary, and exits by its outcome.
@Suite("mmulab notifier-storm")
struct NotifierStormCommandTests {
    /// The value of a summary row (`  key   value`), if the summary has it.
    static func row(_ key: String, in text: String) -> String? {
        for line in text.split(separator: "\n") where line.hasPrefix("  \(key) ") {
            return line.dropFirst(2 + key.count).trimmingCharacters(in: .whitespaces)
        }
        return nil
    }

    @Test("a clean storm prints the banner, the summary and no violations, and exits 0")
    func cleanStorm() throws {
        let outcome = try Sandbox().mmulab(["notifier-storm", "--seconds", "500ms", "--seed", "7", "--address-spaces", "2"])
        #expect(outcome.status == 0, "\(outcome.transcript)")
        #expect(outcome.stdout.hasPrefix("mmulab notifier-storm: 2 address spaces, seed 7, 0.5 s\n"), "\(outcome.transcript)")
        #expect(Self.row("seed", in: outcome.stdout) == "7", "\(outcome.transcript)")
        let ended = Int(Self.row("invalidations ended", in: outcome.stdout) ?? "")
        #expect((ended ?? 0) > 0, "the storm invalidated nothing: \(outcome.transcript)")
        for key in ["stale translations", "contract violations", "context violations"] {
            #expect(Self.row(key, in: outcome.stdout) == "0", "\(key): \(outcome.transcript)")
        }
        #expect(outcome.stdout.contains("\nNo violations: every device dropped every translation an invalidation made stale.\n"))
    }

    /// Proof the storm's oracle can fail: registration without its grace
    /// period leaves guests with stale translations (a race, so a few tries).
    @Test("--inject skip-registration-grace-period is caught: violations with the seed that replays them, exit 1")
    func injectedFaultIsCaught() throws {
        var last: Outcome?
        for seed in 1...5 {
            let outcome = try Sandbox().mmulab([
                "notifier-storm", "--seconds", "1", "--seed", "\(seed)", "--address-spaces", "2", "--inject", "skip-registration-grace-period",
            ])
            last = outcome
            if outcome.status == 1 { break }
        }
        let outcome = try #require(last)
        #expect(outcome.status == 1, "five storms with the fault injected found nothing: \(outcome.transcript)")
        #expect(outcome.stdout.contains(", fault injected: skip-registration-grace-period\n"), "\(outcome.transcript)")
        #expect(outcome.stdout.contains("\nViolations (replay with --seed "), "\(outcome.transcript)")
        #expect(outcome.stdout.contains("  - stale translation: guest-"), "\(outcome.transcript)")
    }
}
