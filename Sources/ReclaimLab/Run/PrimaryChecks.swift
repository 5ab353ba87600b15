import LabSync
import VirtualMemory

/// Turns what the primary's own checks (stale translations and uses after
/// free at device access), the notifier core (unpaired start/end) and the
/// synchronisation layer (sleeps in non-blockable contexts) recorded into
/// findings. Polled by the run loop as they appear, so a finding's event
/// trail is the one that led there, not what came after.
struct PrimaryChecks {
    /// How far one of those logs has been read.
    private struct Cursor {
        /// Kept entries already turned into findings.
        var taken = 0
        /// The log's count (kept or not) when last looked at.
        var counted = 0

        /// The kept entries recorded since the last call (none, without
        /// copying the log, once it is full or nothing is new).
        mutating func newEntries<Entry>(_ log: ReportLog<Entry>) -> ArraySlice<Entry> {
            counted = max(counted, log.count)
            guard taken < min(counted, log.capacity) else { return [] }
            let kept = log.snapshot
            defer { taken = kept.count }
            return kept.dropFirst(taken)
        }

        /// Entries the log counted but did not keep.
        var unkept: Int { counted - taken }
    }

    private var violations = Cursor()
    private var contract = Cursor()
    private var context = Cursor()

    /// Notes the entries recorded since the last call.
    mutating func collect(_ lab: Lab, into findings: FindingLog) {
        for violation in violations.newEntries(lab.machine.violations) {
            let place = lab.place(violation.addressSpace, violation.address).map { place in
                var place = place
                place.frame = "the device used \(violation.devicePage.map { "\($0)" } ?? "\(violation.frame)"); the primary maps "
                    + (violation.primaryFrame.map { "\($0)" } ?? "nothing")
                return place
            }
            findings.note(
                Finding.Invariant(violation.kind), "\(violation)", place: place,
                trail: lab.trail.trail(space: violation.addressSpace, address: violation.address))
        }
        for violation in contract.newEntries(lab.machine.notifierCore.contractViolations) { findings.note(.unpairedStartEnd, "\(violation)") }
        for violation in context.newEntries(lab.machine.sync.contextViolations) { findings.note(.contextViolation, "\(violation)") }
    }

    /// At the end: the entries the primary's full logs counted but did not
    /// keep. (A machine violation not kept is counted as a stale
    /// translation: its kind is gone with it.)
    func countUnkept(into findings: FindingLog) {
        findings.countUnkept(.staleTranslation, violations.unkept)
        findings.countUnkept(.unpairedStartEnd, contract.unkept)
        findings.countUnkept(.contextViolation, context.unkept)
    }
}

extension Finding.Invariant {
    /// The invariant a violation the primary's access check recorded breaks.
    init(_ kind: MemoryViolation.Kind) {
        switch kind {
        case .staleTranslation: self = .staleTranslation
        case .useAfterFree, .accessAfterExit: self = .useAfterFree
        case .writeThroughReadOnly: self = .writeThroughReadOnly
        case .protNoneAccess: self = .protNoneAccess
        }
    }
}
