import LabSync
import VirtualMemory

/// Turns what the primary's own checks (stale translations and uses after
/// free at device access), the notifier core (unpaired start/end) and the
/// synchronisation layer (sleeps in non-blockable contexts) recorded into
/// findings. Polled by the run loop as they appear, so a finding's event
/// trail is the one that led there, not what came after.
struct PrimaryChecks {
    private var violationsSeen = 0
    private var contractSeen = 0
    private var contextSeen = 0

    /// Notes the entries recorded since the last call.
    mutating func collect(_ lab: Lab, into findings: FindingLog) {
        let machine = lab.machine
        if machine.violations.count > violationsSeen {
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
        if machine.notifierCore.contractViolations.count > contractSeen {
            let kept = machine.notifierCore.contractViolations.snapshot
            for violation in kept.dropFirst(contractSeen) { findings.note(.unpairedStartEnd, "\(violation)") }
            contractSeen = kept.count
        }
        if machine.sync.contextViolations.count > contextSeen {
            let kept = machine.sync.contextViolations.snapshot
            for violation in kept.dropFirst(contextSeen) { findings.note(.contextViolation, "\(violation)") }
            contextSeen = kept.count
        }
    }
}
