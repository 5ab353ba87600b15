import LabSync
import Synchronization

/// Findings of a run, from any thread (bounded: a storm of one bug need
/// not be kept in full).
final class FindingLog: @unchecked Sendable {
    // @unchecked: `counts` is an array of atomics, allocated once.
    static let kept = 1_000
    private let log = ReportLog<Finding>(capacity: kept)
    let total = Atomic<Int>(0)
    /// By `Finding.Invariant.allCases` index: every finding, kept or not.
    private let counts: UnsafeMutablePointer<Atomic<Int>>

    /// The invariants whose checks the scenario has on: only their
    /// findings are kept (and counted in `total`).
    let enabled: Set<Finding.Invariant>

    /// Where the run's scheduling step comes from (a finding of a
    /// deterministic run records the step it was noted at).
    let sync: SyncDomain?

    init(enabled: Set<Finding.Invariant> = Set(Finding.Invariant.allCases), sync: SyncDomain? = nil) {
        self.enabled = enabled
        self.sync = sync
        counts = .allocate(capacity: Finding.Invariant.allCases.count)
        for index in Finding.Invariant.allCases.indices { (counts + index).initialize(to: Atomic(0)) }
    }

    deinit {
        counts.deinitialize(count: Finding.Invariant.allCases.count)
        counts.deallocate()
    }

    /// Notes a finding; its place and trail are worked out only while the
    /// log still keeps findings (a storm of one bug costs little).
    func note(
        _ invariant: Finding.Invariant, _ detail: @autoclosure () -> String, place: @autoclosure () -> Finding.Place? = nil,
        trail: @autoclosure () -> [String] = []
    ) {
        counts[Finding.Invariant.allCases.firstIndex(of: invariant)!].add(1, ordering: .relaxed)
        guard enabled.contains(invariant) else { return }
        let before = total.add(1, ordering: .relaxed).oldValue
        guard before < Self.kept else { return }
        var finding = Finding(invariant: invariant, detail: detail(), place: place(), trail: trail())
        finding.step = sync?.currentStep
        log.record(finding)
    }

    /// Counts `extra` findings of `invariant` that were recorded elsewhere
    /// and not kept (a full log of the primary's).
    func countUnkept(_ invariant: Finding.Invariant, _ extra: Int) {
        guard extra > 0 else { return }
        counts[Finding.Invariant.allCases.firstIndex(of: invariant)!].add(extra, ordering: .relaxed)
        if enabled.contains(invariant) { total.add(extra, ordering: .relaxed) }
    }

    /// How many findings of these invariants were noted (kept or not).
    func count(of invariants: Set<Finding.Invariant>) -> Int {
        Finding.Invariant.allCases.enumerated().filter { invariants.contains($0.element) }
            .reduce(0) { $0 + counts[$1.offset].load(ordering: .relaxed) }
    }

    var all: [Finding] { log.snapshot }
}
