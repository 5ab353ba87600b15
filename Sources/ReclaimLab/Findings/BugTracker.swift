import LabSync
import Synchronization

/// The run's findings as a bug tracker keeps them: every finding is
/// counted under its invariant, and those of the enabled checks are
/// gathered into bugs by their `BugKey`, each bug keeping its first few
/// occurrences with their evidence. A storm of one bug costs a counter and
/// a dictionary lookup per finding; evidence (the event trail above all)
/// is worked out only while the bug still wants examples.
///
/// Symptoms the tag oracle sees on a read (a lost write, another page's
/// data) are counted here and filed by `Attribution`: attached to the root
/// cause the primary flagged for the same access, or as bugs of their own.
///
/// Thread safety: any thread may note; the locks are the host's spin locks
/// (findings are noted from callbacks that must not sleep). Lock order:
/// `budget` is never held while `bugs` is taken.
final class BugTracker: @unchecked Sendable {
    // @unchecked: `counts` is an array of atomics, allocated once; the rest is locked.
    /// Symptoms per key whose evidence is worked out as they are noted.
    static let symptomEvidence = Bug.examplesKept + 1
    /// How often a key gets its evidence budget back when a symptom that
    /// had evidence is attached to a root cause (so the symptoms filed as
    /// bugs of their own still come with evidence, at a bounded cost).
    static let evidenceRefunds = 64

    /// The invariants whose checks the scenario has on: only their
    /// findings become bugs (every finding is counted).
    let enabled: Set<Finding.Invariant>
    let clock: LabClock
    /// Findings of the enabled checks, kept in a bug or attached to one.
    let total = Atomic<Int>(0)
    /// By `Finding.Invariant.allCases` index: every finding, enabled or not.
    private let counts: UnsafeMutablePointer<Atomic<Int>>
    private let bugs: SpinLocked<[BugKey: Record]>
    private let budget: SpinLocked<EvidenceBudget>

    private struct Record {
        /// Occurrences of the root finding.
        var count = 0
        /// Absolute lab-clock nanoseconds of the earliest occurrence.
        var first: UInt64
        /// Occurrences whose evidence is still wanted.
        var slots = Bug.examplesKept + 1
        var evidence: [Finding] = []
        var symptoms: [Finding.Invariant: Int] = [:]
        var symptomExamples: [Finding] = []
    }

    private struct EvidenceBudget {
        /// By key: symptoms whose evidence was taken (less refunds).
        var captured: [BugKey: Int] = [:]
        /// By key: refunds given.
        var refunds: [BugKey: Int] = [:]
    }

    /// Where a finding's scheduling step comes from (a deterministic run's).
    private let domain: SyncDomain

    init(enabled: Set<Finding.Invariant>, clock: LabClock, domain: SyncDomain) {
        self.enabled = enabled
        self.clock = clock
        self.domain = domain
        bugs = SpinLocked([:], name: "bug tracker", domain: domain)
        budget = SpinLocked(EvidenceBudget(), name: "symptom evidence budget", domain: domain)
        counts = .allocate(capacity: Finding.Invariant.allCases.count)
        for index in Finding.Invariant.allCases.indices { (counts + index).initialize(to: Atomic(0)) }
    }

    deinit {
        counts.deinitialize(count: Finding.Invariant.allCases.count)
        counts.deallocate()
    }

    private func countOne(_ invariant: Finding.Invariant, _ extra: Int = 1) -> Bool {
        counts[Finding.Invariant.allCases.firstIndex(of: invariant)!].add(extra, ordering: .relaxed)
        guard enabled.contains(invariant) else { return false }
        total.add(extra, ordering: .relaxed)
        return true
    }

    /// Notes a finding of bug `key` made at `nanoseconds` (absolute lab
    /// clock); `evidence` is called only if the bug still wants examples.
    func note(_ key: BugKey, at nanoseconds: UInt64, evidence: () -> Finding) {
        guard countOne(key.invariant) else { return }
        file(key, at: nanoseconds, evidence: evidence)
    }

    /// Counts `extra` findings of `invariant` that happened but whose
    /// details are gone (a log of the primary's overflowed).
    func countUnkept(_ invariant: Finding.Invariant, _ extra: Int) {
        guard extra > 0 else { return }
        _ = countOne(invariant, extra)
    }

    /// Files an occurrence already counted.
    private func file(_ key: BugKey, at nanoseconds: UInt64, count: Int = 1, evidence: () -> Finding?) {
        let wanted = bugs.withLock { bugs -> Bool in
            var record = bugs[key] ?? Record(first: nanoseconds)
            record.count += count
            record.first = min(record.first, nanoseconds)
            let wanted = record.slots > 0
            if wanted { record.slots -= 1 }
            bugs[key] = record
            return wanted
        }
        guard wanted, var finding = evidence() else { return }
        if finding.step == nil { finding.step = domain.currentStep }
        bugs.withLock { $0[key]?.evidence.append(finding) }
    }

    // MARK: Symptoms

    /// Counts a symptom seen by the tag oracle and returns it to be filed
    /// (`Attribution.file`), with its evidence for the first few of its key;
    /// nil if its check is off.
    func noteSymptom(_ symptom: Symptom, evidence: () -> Finding) -> Symptom? {
        guard countOne(symptom.key.invariant) else { return nil }
        let capture = budget.withLock { budget -> Bool in
            guard budget.captured[symptom.key, default: 0] < Self.symptomEvidence else { return false }
            budget.captured[symptom.key, default: 0] += 1
            return true
        }
        var counted = symptom
        if capture {
            counted.evidence = evidence()
            counted.evidence?.step = domain.currentStep
        }
        return counted
    }

    /// Files a symptom as a bug of its own (no root cause was seen).
    func fileAlone(_ symptom: Symptom) {
        file(symptom.key, at: symptom.nanoseconds) { symptom.evidence }
    }

    /// Attaches a symptom to the root cause `root` (already filed).
    func attach(_ symptom: Symptom, to root: BugKey) {
        if symptom.evidence != nil {
            budget.withLock { budget in
                guard budget.refunds[symptom.key, default: 0] < Self.evidenceRefunds else { return }
                budget.refunds[symptom.key, default: 0] += 1
                budget.captured[symptom.key, default: 0] -= 1
            }
        }
        bugs.withLock { bugs in
            var record = bugs[root] ?? Record(first: symptom.nanoseconds)
            record.symptoms[symptom.key.invariant, default: 0] += 1
            if let evidence = symptom.evidence, record.symptomExamples.count < Bug.symptomExamplesKept {
                record.symptomExamples.append(evidence)
            }
            bugs[root] = record
        }
    }

    // MARK: Reading

    /// How many findings of these invariants were noted (kept or not).
    func count(of invariants: Set<Finding.Invariant>) -> Int {
        Finding.Invariant.allCases.enumerated().filter { invariants.contains($0.element) }
            .reduce(0) { $0 + counts[$1.offset].load(ordering: .relaxed) }
    }

    /// Findings per enabled invariant (including those with none), in the
    /// invariants' order.
    var byInvariant: [(invariant: Finding.Invariant, count: Int)] {
        Finding.Invariant.allCases.enumerated().filter { enabled.contains($0.element) }
            .map { ($0.element, counts[$0.offset].load(ordering: .relaxed)) }
    }

    /// The bugs, in the order they were first seen.
    var all: [Bug] {
        let records = bugs.withLock { $0 }
        return records.map { key, record in
            let evidence = record.evidence.sorted { ($0.seconds ?? .infinity) < ($1.seconds ?? .infinity) }
            let firstSeen = clock.seconds(record.first)
            let first = evidence.first ?? Finding(invariant: key.invariant, detail: key.title, seconds: firstSeen)
            return Bug(
                key: key, count: record.count, firstSeenSeconds: firstSeen, first: first, examples: Array(evidence.dropFirst().prefix(Bug.examplesKept)),
                symptoms: Finding.Invariant.allCases.compactMap { invariant in record.symptoms[invariant].map { (invariant, $0) } },
                symptomExamples: record.symptomExamples)
        }.sorted { ($0.firstSeenSeconds, $0.title) < ($1.firstSeenSeconds, $1.title) }
    }
}
