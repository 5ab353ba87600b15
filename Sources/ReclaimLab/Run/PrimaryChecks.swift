import LabSync
import MMUNotifier
import PluginHost
import VirtualMemory

/// Turns what the primary's own checks (stale translations and uses after
/// free at device access: `Attribution`), the notifier core (unpaired
/// start/end, retry from a blockable start), the synchronisation layer
/// (sleeps in non-blockable contexts) and the plugins themselves
/// (`MMULAB_LOG_MISBEHAVING`) recorded into findings. Polled by the run
/// loop as they appear, so a finding's event trail is the one that led
/// there, not what came after.
///
/// Each log is drained, so it never fills between two polls unless more
/// than its capacity arrives in one interval; then what did not fit is
/// counted (`unkept`) and noted in the report.
struct PrimaryChecks {
    /// Entries the logs counted but did not keep, by invariant.
    private(set) var unkept: [Finding.Invariant: Int] = [:]

    /// Reads everything recorded since the last call.
    mutating func collect(_ lab: Lab) {
        lab.attribution.collect(lab)
        collectContractViolations(lab)
        collectContextViolations(lab)
        collectPluginReports(lab)
        collectPluginViolations(lab)
        collectLockOrder(lab)
    }

    /// The entries of `log` since the last drain, and how many it counted but did not keep.
    private func drain<Entry>(_ log: ReportLog<Entry>) -> (entries: [Entry], lost: Int) {
        // A record between the two calls is either kept (and drained) or
        // lost uncounted: `lost` may fall short, never over.
        let counted = log.count
        guard counted > 0 else { return ([], 0) }
        let entries = log.drain()
        return (entries, max(0, counted - entries.count))
    }

    private mutating func noteLost(_ invariant: Finding.Invariant, _ lost: Int, _ lab: Lab) {
        guard lost > 0 else { return }
        unkept[invariant, default: 0] += lost
        lab.findings.countUnkept(invariant, lost)
    }

    // MARK: The notifier contract

    private mutating func collectContractViolations(_ lab: Lab) {
        let (violations, lost) = drain(lab.machine.notifierCore.contractViolations)
        noteLost(.unpairedStartEnd, lost, lab)
        let now = lab.clock.nanoseconds
        for violation in violations {
            let key: BugKey
            switch violation.kind {
            case .retryFromBlockableStart(let subscriber):
                key = BugKey(
                    invariant: .retryFromBlockableStart, instance: lab.instanceLabel(forPluginNamed: subscriber) ?? subscriber,
                    path: "invalidation start", event: violation.range.map { "\($0.event)" })
            case .unpairedStart:
                key = BugKey(invariant: .unpairedStartEnd, path: "invalidation at \(violation.site)", event: violation.range.map { "\($0.event)" })
            }
            lab.findings.note(key, at: now) {
                Finding(
                    invariant: key.invariant, detail: "\(violation)", place: violation.range.flatMap { lab.place($0.addressSpace, $0.start) },
                    trail: violation.range.map { lab.trail.trail(space: $0.addressSpace, address: $0.start) } ?? [],
                    seconds: lab.clock.seconds(now), actor: violation.thread.name)
            }
        }
    }

    // MARK: Context rules

    private mutating func collectContextViolations(_ lab: Lab) {
        let (violations, lost) = drain(lab.machine.sync.contextViolations)
        noteLost(.contextViolation, lost, lab)
        let now = lab.clock.nanoseconds
        for violation in violations {
            let what = violation.object.isEmpty ? violation.operation.rawValue : "\(violation.operation.rawValue) on '\(violation.object)'"
            let section = violation.context
            let key = BugKey(
                invariant: .contextViolation, kind: what, instance: violation.callee?.callee, path: violation.callee?.operation ?? "\(violation.site)",
                event: section.subject.isEmpty ? section.reason : "\(section.reason) '\(section.subject)'")
            lab.findings.note(key, at: now) {
                Finding(invariant: .contextViolation, detail: "\(violation)", seconds: lab.clock.seconds(now), actor: violation.thread.name)
            }
        }
    }

    // MARK: What plugins say about themselves

    private mutating func collectPluginReports(_ lab: Lab) {
        let now = lab.clock.nanoseconds
        for (p, made) in lab.instances.enumerated() {
            for (i, instance) in made.enumerated() {
                let (entries, lost) = drain(instance.log)
                noteLost(.pluginReported, lost, lab)
                for entry in entries where entry.level == .misbehaving {
                    let label = lab.instanceLabels[p][i]
                    let key = BugKey(invariant: .pluginReported, kind: Self.shape(of: entry.message), instance: label, path: "host log")
                    lab.findings.note(key, at: now) {
                        Finding(
                            invariant: .pluginReported, detail: "\(label) logged MMULAB_LOG_MISBEHAVING: \(entry.message)",
                            seconds: lab.clock.seconds(now))
                    }
                }
            }
        }
    }

    // MARK: What the host caught plugins doing at the boundary

    private mutating func collectPluginViolations(_ lab: Lab) {
        let now = lab.clock.nanoseconds
        for made in lab.instances {
            for instance in made {
                let (entries, lost) = drain(instance.violations)
                noteLost(.pluginContract, lost, lab)
                for violation in entries { file(violation, lab, at: now) }
            }
        }
        let (unattributed, lost) = drain(UnattributedViolations.log)
        noteLost(.pluginContract, lost, lab)
        for violation in unattributed { file(violation, lab, at: now) }
    }

    private func file(_ violation: PluginContractViolation, _ lab: Lab, at now: UInt64) {
        let invariant: Finding.Invariant
        switch violation.kind {
        case .misuse: invariant = .pluginContract
        case .leak: invariant = .leftBehind
        case .lockHeldAtReturn: invariant = .lockHeldAtReturn
        }
        let key = BugKey(
            invariant: invariant, kind: violation.summary ?? "\(violation.service): \(Self.shape(of: violation.problem))",
            instance: violation.plugin, path: violation.during ?? violation.service)
        lab.findings.note(key, at: now) {
            Finding(invariant: invariant, detail: "\(violation)", seconds: lab.clock.seconds(now), actor: violation.thread.name)
        }
    }

    // MARK: Lock order (lockdep)

    private mutating func collectLockOrder(_ lab: Lab) {
        guard let validator = lab.machine.sync.lockOrder else { return }
        let (violations, lost) = drain(validator.violations)
        noteLost(.lockInversion, lost, lab)
        let now = lab.clock.nanoseconds
        for violation in violations {
            // The instance: the first plugin whose lock is in the cycle (plugin locks' classes are `plugin: name`).
            let plugin = violation.classes.lazy.compactMap { name in name.firstIndex(of: ":").map { String(name[..<$0]) } }.first
            let key = BugKey(
                invariant: .lockInversion, kind: (violation.involvesReclaim ? "with reclaim: " : "") + violation.cycle,
                instance: plugin.map { lab.instanceLabel(forPluginNamed: $0) ?? $0 }, path: "lock order")
            lab.findings.note(key, at: now) {
                Finding(
                    invariant: .lockInversion, detail: "\(violation)",
                    trail: violation.thisThread.map { "this thread: \($0)" } + violation.earlier.map { "earlier: \($0)" },
                    seconds: lab.clock.seconds(now))
            }
        }
    }

    /// A message with its numbers replaced by `N`, so one complaint about
    /// many addresses is one bug (as syzkaller strips addresses from titles).
    static func shape(of message: String) -> String {
        var out = ""
        var inNumber = false
        let characters = Array(message)
        for (index, character) in characters.enumerated() {
            let isDigit = character.isASCII && character.isNumber
            let isHex = inNumber && character.isHexDigit
            let startsHex = character == "0" && index + 1 < characters.count && characters[index + 1] == "x"
            if isDigit || isHex || (inNumber && character == "x") || startsHex {
                if !inNumber { out += "N" }
                inNumber = true
            } else {
                inNumber = false
                out.append(character)
            }
        }
        return String(out.prefix(120))
    }

    /// At the end: what the logs counted but did not keep, for the report.
    func notes(_ lab: Lab) -> [String] {
        var unkept = unkept
        let lost = lab.attribution.lost
        if lost > 0 { unkept[.staleTranslation, default: 0] += lost }
        return unkept.sorted { $0.key.rawValue < $1.key.rawValue }.map {
            "\($0.value) \($0.key.rawValue) findings happened faster than the run loop could read them: counted, not filed in a bug"
        }
    }
}

extension Lab {
    /// How the run names the plugin instance that is device `device`.
    func instanceLabel(of device: DeviceID) -> String? {
        for (p, made) in instances.enumerated() {
            for (i, instance) in made.enumerated() where instance.device == device { return instanceLabels[p][i] }
        }
        return nil
    }

    /// How the run names the instance of the loaded plugin called `name`
    /// (the name it gives itself), if exactly one instance has that name.
    func instanceLabel(forPluginNamed name: String) -> String? {
        var found: [String] = []
        for (p, made) in instances.enumerated() {
            for (i, instance) in made.enumerated() where instance.plugin.name == name { found.append(instanceLabels[p][i]) }
        }
        return found.count == 1 ? found[0] : nil
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
