import LabSync
import VirtualMemory

/// Turns what the primary's own checks (stale translations and uses after
/// free at device access), the notifier core (unpaired start/end) and the
/// synchronisation layer (sleeps in non-blockable contexts) recorded into
/// findings. Polled by the run loop as they appear, so a finding's event
/// trail is the one that led there, not what came after.
struct PrimaryChecks {
    /// Per log: entries taken from its snapshot, and its count then.
    private var violationsSeen = 0
    private var contractSeen = 0
    private var contextSeen = 0
    private var violationsCounted = 0
    private var contractCounted = 0
    private var contextCounted = 0

    /// Notes the entries recorded since the last call.
    mutating func collect(_ lab: Lab, into findings: FindingLog) {
        let machine = lab.machine
        let violations = machine.violations.count
        violationsCounted = max(violationsCounted, violations)
        if violationsSeen < min(violations, machine.violations.capacity) {
            let kept = machine.violations.snapshot
            for violation in kept.dropFirst(violationsSeen) {
                let place = lab.place(violation.addressSpace, violation.address).map { place in
                    var place = place
                    place.frame = "the device used \(violation.devicePage.map { "\($0)" } ?? "\(violation.frame)"); the primary maps "
                        + (violation.primaryFrame.map { "\($0)" } ?? "nothing")
                    return place
                }
                findings.note(
                    violation.kind == .staleTranslation ? .staleTranslation : .useAfterFree, "\(violation)", place: place,
                    trail: lab.trail.trail(space: violation.addressSpace, address: violation.address))
            }
            violationsSeen = kept.count
        }
        let contract = machine.notifierCore.contractViolations.count
        contractCounted = max(contractCounted, contract)
        if contractSeen < min(contract, machine.notifierCore.contractViolations.capacity) {
            let kept = machine.notifierCore.contractViolations.snapshot
            for violation in kept.dropFirst(contractSeen) { findings.note(.unpairedStartEnd, "\(violation)") }
            contractSeen = kept.count
        }
        let context = machine.sync.contextViolations.count
        contextCounted = max(contextCounted, context)
        if contextSeen < min(context, machine.sync.contextViolations.capacity) {
            let kept = machine.sync.contextViolations.snapshot
            for violation in kept.dropFirst(contextSeen) { findings.note(.contextViolation, "\(violation)") }
            contextSeen = kept.count
        }
    }

    /// At the end: the entries the primary's full logs counted but did not keep.
    func countUnkept(_ lab: Lab, into findings: FindingLog) {
        // Each kind of machine violation is a stale translation or a use after
        // free; the ones not kept are counted as the first kind kept was.
        let kinds = lab.machine.violations.snapshot.first.map { $0.kind == .staleTranslation ? Finding.Invariant.staleTranslation : .useAfterFree }
        findings.countUnkept(kinds ?? .staleTranslation, violationsCounted - violationsSeen)
        findings.countUnkept(.unpairedStartEnd, contractCounted - contractSeen)
        findings.countUnkept(.contextViolation, contextCounted - contextSeen)
    }
}
