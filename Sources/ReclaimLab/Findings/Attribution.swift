import LabSync
import MMUNotifier
import VirtualMemory

/// Root cause first: turns the primary's DMA-check violations (stale
/// translations, uses after free at device access) into findings, and
/// files each symptom the tag oracle sees on a read (a lost write, another
/// page's data) either as a symptom of the root cause the primary flagged
/// for the same bad access (`RootCauses`), or as a bug of its own.
///
/// The threads that produce the findings do the work: a workload thread
/// that sees a symptom files it at once, and a device thread whose
/// accesses fill the machine's violation log (1,000 entries, the rest only
/// counted) drains it; the run loop drains it too. Everything happens under
/// one sleeping lock, and every filing of a symptom first drains the log:
/// the violation of the symptom's own access was recorded during the
/// access, before the symptom, so it is counted by the time the symptom is
/// matched, however the threads are scheduled. A storm of one bug slows
/// the threads that cause it, not the run loop, so a run still ends on
/// time. Only blockable threads call in (never from a callback).
final class Attribution: @unchecked Sendable {
    // @unchecked: every var is guarded by `lock`.
    /// A device thread drains the machine's log when it holds this many.
    static let drainAt = 256

    private let lock: SleepingLock
    private var roots = RootCauses()
    /// Threads already looked up in the actor registry.
    private var identities: [Int32: ActorIdentity] = [:]
    /// Violations the machine's log counted but did not keep.
    private var lostViolations = 0

    init(domain: SyncDomain) {
        lock = SleepingLock("finding attribution", domain: domain)
    }

    /// Drains the machine's violation log (run loop, and at the end).
    func collect(_ lab: Lab) {
        lock.withLock { drainLocked(lab) }
    }

    /// Drains the machine's violation log if it is filling and no other
    /// thread is at it (device threads, now and then).
    func collectIfFilling(_ lab: Lab) {
        guard lab.machine.violations.count >= Self.drainAt else { return }
        _ = lock.withLockIfAvailable { drainLocked(lab) }
    }

    /// Files a symptom (already counted by the tracker).
    func file(_ symptom: Symptom, _ lab: Lab) {
        lock.withLock {
            drainLocked(lab)
            if let root = roots.cause(of: symptom) {
                lab.findings.attach(symptom, to: root)
            } else {
                lab.findings.fileAlone(symptom)
            }
        }
    }

    /// Violations counted but not kept, for the report's notes.
    var lost: Int { lock.withLock { lostViolations } }

    private func drainLocked(_ lab: Lab) {
        // A record between the two calls is either kept (and drained) or
        // lost uncounted: `lost` may fall short, never over.
        let counted = lab.machine.violations.count
        guard counted > 0 else { return }
        let violations = lab.machine.violations.drain()
        let lost = max(0, counted - violations.count)
        if lost > 0 {
            // A violation not kept has lost its kind: counted as a stale translation.
            lostViolations += lost
            lab.findings.countUnkept(.staleTranslation, lost)
        }
        let now = lab.clock.nanoseconds
        for violation in violations { record(violation, lab, now: now) }
    }

    private func identity(of thread: ThreadIdentity, _ lab: Lab) -> ActorIdentity? {
        if let known = identities[thread.tid] { return known }
        let found = lab.actors.identity(of: thread)
        if let found { identities[thread.tid] = found }
        return found
    }

    private func record(_ violation: MemoryViolation, _ lab: Lab, now: UInt64) {
        let actor = identity(of: violation.thread, lab)
        // When: the thread's latest access of the page (the bad one, or one
        // just after it: the run loop reads the log within milliseconds),
        // or, if that began before the bad access reached memory (the
        // primary's check stamps the violation), the moment it did. That is
        // the straddling case: the thread was preempted between its
        // translation and its DMA, and an invalidation that ran meanwhile (a
        // fork's write-protect) is the one the access failed to honour;
        // keyed by when it began, the finding would name an older, innocent
        // event and its trail would stop short of the culprit.
        // A late set_dirty is no access of the thread's: it is keyed by when
        // the primary saw it (a late mark_accessed marks nothing and is no
        // finding: `Machine.markFromDevice`).
        let latest = violation.service == nil ? actor?.history?.latest(violation.address)?.nanoseconds : nil
        let landed = violation.nanoseconds
        let at = violation.service == nil ? max(landed, latest ?? now) : landed
        let began = latest.flatMap { $0 < landed ? $0 : nil }
        let invariant = Finding.Invariant(violation.kind)
        let event = lab.lastInvalidation(violation.addressSpace, violation.address, atOrBefore: at)
        // The instance: the device that issued the access, when it said;
        // else the one the thread drives.
        let instance = violation.issuer.flatMap { lab.instanceLabel(of: $0) } ?? actor?.instance
        let key = BugKey(
            invariant: invariant, kind: violation.kind.rawValue, instance: instance, path: violation.service ?? actor?.path ?? "device access",
            event: event.map { "\($0.event)" })
        lab.findings.note(key, at: at) {
            var place = lab.place(violation.addressSpace, violation.address)
            // What the primary maps there now, as the access check saw it (a
            // set_dirty is checked without looking).
            if violation.service == nil { place?.frame = violation.primaryFrame.map { Self.name($0, lab) } ?? "nothing" }
            let used = violation.devicePage.map { "\($0)" } ?? Self.name(violation.frame, lab)
            let who = actor.map { "\($0.name) (device \(instance ?? "?"))" } ?? "thread \(violation.thread) (device \(instance ?? "?"))"
            let detail: String
            if let service = violation.service {
                // set_dirty: the page's state, not its contents.
                // Space 0: the instance has bindings over the address in several spaces.
                let of = violation.addressSpace.rawValue == 0 ? "" : "\(violation.addressSpace) "
                detail = "\(who) called \(service) on \(used) (its translation of \(of)0x\(String(violation.address, radix: 16))), "
                    + "a frame freed since the device translated it: \(violation.kind.rawValue) (Linux: "
                    + "\(service == "set_dirty" ? "set_page_dirty" : service) on a page the driver no longer holds; "
                    + "a write the device made to it is lost, and the mark would land on a free page or another owner's)"
            } else {
                detail = "\(who) \(violation.verb) \(used) at \(violation.addressSpace) 0x\(String(violation.address, radix: 16)) "
                    + "\(Self.how(violation.kind)): \(violation.kind.rawValue); the primary maps \(violation.primaryFrame.map { Self.name($0, lab) } ?? "nothing") there"
                    + (violation.acknowledged.map { "; the device had acknowledged the invalidation \($0)" } ?? "")
            }
            let bad: EventTrail.BadAccess = violation.service.map { .mark(service: $0) } ?? .dma(write: violation.write)
            var finding = Finding(
                invariant: invariant,
                detail: detail,
                place: place,
                trail: lab.trail.trail(space: violation.addressSpace, address: violation.address, upTo: at, access: (bad, began, at)),
                seconds: lab.clock.seconds(at), actor: actor?.name ?? violation.thread.name,
                deviceTranslation: Self.deviceTranslation(violation, lab))
            // The step of the bad access itself (the finding's `step` is the
            // later one of the drain that noted it).
            finding.accessStep = violation.step
            return finding
        }
        if lab.findings.enabled.contains(invariant) {
            roots.record(PageID(violation.addressSpace, violation.address), key, at: at, by: violation.thread.tid)
        }
    }

    /// What was wrong with the translation a bad access went through, as
    /// the finding's sentence says it.
    static func how(_ kind: MemoryViolation.Kind) -> String {
        switch kind {
        case .staleTranslation, .useAfterFree: "through a translation the primary no longer has"
        case .writeThroughReadOnly: "through a translation that does not allow a write"
        case .protNoneAccess: "through a translation of a page the primary maps PROT_NONE"
        case .accessAfterExit: "through a translation of an address space that has exited"
        }
    }

    /// How a finding names a frame: the shared zero page by that name
    /// (its number, one past the machine's frames, means nothing to a reader).
    static func name(_ frame: PageFrameNumber, _ lab: Lab) -> String {
        frame.rawValue == UInt64(UInt32(bitPattern: lab.machine.zeroFrame)) ? "the zero page (\(frame))" : "\(frame)"
    }

    /// The device translation's frame (or device page) and generation,
    /// and the frame's generation now when it moved on (freed since).
    private static func deviceTranslation(_ violation: MemoryViolation, _ lab: Lab) -> String {
        if let page = violation.devicePage { return "device page \(page) generation \(violation.generation)" }
        let frame = violation.frame
        var text = "\(name(frame, lab)) generation \(violation.generation)"
        if frame.rawValue < UInt64(lab.machine.memory.frameCount) {
            let now = lab.machine.memory.generation(of: Int32(truncatingIfNeeded: frame.rawValue))
            if now != violation.generation { text += " (the frame is in generation \(now) now: freed since)" }
        }
        return text
    }
}

