import ArgumentParser
import MMUNotifier
import NotifierStormLab

#if canImport(Glibc)
import Glibc
#endif

struct NotifierStormCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "notifier-storm",
        abstract: "Storm the notifier core alone with in-process mirror devices and check coherence.",
        discussion: """
            Several address spaces, each watched by a whole-space mirror device (KVM-like), \
            interval devices that fault with readBegin/readRetry (GPU-like), and a device that \
            fast-fails non-blockable starts when busy (RDMA-like). Invalidator threads fire \
            every event reason, an OOM-reaper thread fires non-blockable ones, and a registrar \
            adds and removes subscribers throughout. After every invalidation ends, the oracle \
            checks that no device still holds a translation older than the primary's.

            Exit status: 0 clean, 1 violations found, 2 bad input.
            """
    )

    @Option(name: .long, parsing: .unconditional, help: "How long to run: seconds, or 500ms, 10s, 2m.", transform: ArgumentValues.duration)
    var seconds: Double = 10

    @Option(name: .long, parsing: .unconditional, help: "Seed for every random choice (printed in the report).", transform: ArgumentValues.seed)
    var seed: UInt64 = 1

    @Option(name: .long, parsing: .unconditional, help: "Number of address spaces (1...64).", transform: { try ArgumentValues.count($0, in: 1...64) })
    var addressSpaces: Int = 4

    @Option(name: .long, help: "Break the core on purpose to see the oracle catch it. One of: none, skip-registration-grace-period.")
    var inject: Injection = .none

    enum Injection: String, ExpressibleByArgument, CaseIterable {
        case none
        case skipRegistrationGracePeriod = "skip-registration-grace-period"
    }

    func validate() throws {
        guard seconds <= 3_600 else { throw ValidationError("--seconds must be at most 3600 (an hour), got \(seconds)") }
    }

    func run() throws {
        let faults: NotifierCore.FaultInjection = inject == .none ? [] : .skipRegistrationGracePeriod
        let storm = NotifierStorm(seed: seed, addressSpaces: addressSpaces, faults: faults)
        print("mmulab notifier-storm: \(addressSpaces) address spaces, seed \(seed), \(fixed(seconds)) s"
            + (faults.isEmpty ? "" : ", fault injected: \(inject.rawValue)"))
        let progress = ProgressLine()
        let outcome = storm.run(for: .milliseconds(Int64(seconds * 1000))) { snapshot in
            progress.update(snapshot.progressText)
        }
        progress.finish()
        print(outcome.report)
        if !outcome.isClean { throw ExitCode(1) }
    }
}

