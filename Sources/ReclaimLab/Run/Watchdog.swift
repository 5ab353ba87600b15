import LabSync
import Synchronization

/// An actor's sign of life for the watchdog, and of use for the report:
/// how often it did what it is there for (an access that went through, a
/// migration, an attach), so an actor that never once did is named.
final class Heartbeat: Sendable {
    let name: String
    let role: ActorActivity.Role
    let beats = Atomic<Int>(0)
    let successes = Atomic<Int>(0)
    let finished = Atomic<Bool>(false)
    init(name: String, role: ActorActivity.Role) {
        self.name = name
        self.role = role
    }
    // Bumped by the actor's own thread only (every caller is its loop), so a
    // load and a store do: no locked read-modify-write on every access.
    func beat() { beats.store(beats.load(ordering: .relaxed) &+ 1, ordering: .relaxed) }
    func succeeded() { successes.store(successes.load(ordering: .relaxed) &+ 1, ordering: .relaxed) }
    func finish() { finished.store(true, ordering: .releasing) }

    var activity: ActorActivity {
        ActorActivity(name: name, role: role, successes: successes.load(ordering: .relaxed), steps: beats.load(ordering: .relaxed))
    }
}

/// Tells every actor to finish: once set, or (a run cut at a step) once
/// the run's controlled scheduler is past the step it was given. Actors
/// read it between rounds, so a step's round is never cut short.
final class StopFlag: Sendable {
    private let flag = Atomic<Bool>(false)
    /// Set by itself once the controlled scheduler of `sync` is past this step.
    private let afterStep: UInt64?
    private let sync: SyncDomain?

    init(afterStep: UInt64? = nil, sync: SyncDomain? = nil) {
        precondition(afterStep == nil || sync?.isControlled == true, "a stop at a step needs a controlled scheduler")
        self.afterStep = afterStep
        self.sync = sync
    }

    var isSet: Bool {
        if flag.load(ordering: .relaxed) { return true }
        guard let afterStep, let step = sync?.currentStep else { return false }
        return step > afterStep
    }

    func set() { flag.store(true, ordering: .relaxed) }
}

/// Finds actors that stopped making progress: a heartbeat that has not
/// moved for `limit` (a callback that never returns, a retry loop that
/// never ends). Each stuck actor is reported once.
struct Watchdog {
    private let heartbeats: [Heartbeat]
    private let limit: Duration
    private var lastBeats: [Int]
    private var lastChange: [Duration]
    /// Indices of the actors reported stuck.
    private(set) var stuck = Set<Int>()

    init(_ heartbeats: [Heartbeat], limit: Duration, start: Duration) {
        self.heartbeats = heartbeats
        self.limit = limit
        lastBeats = heartbeats.map { $0.beats.load(ordering: .relaxed) }
        lastChange = [Duration](repeating: start, count: heartbeats.count)
    }

    /// The names of the actors newly found stuck at `now`.
    mutating func check(at now: Duration) -> [String] {
        var found: [String] = []
        for (index, heartbeat) in heartbeats.enumerated() where !heartbeat.finished.load(ordering: .acquiring) {
            let beats = heartbeat.beats.load(ordering: .relaxed)
            if beats != lastBeats[index] {
                lastBeats[index] = beats
                lastChange[index] = now
            } else if now - lastChange[index] > limit, stuck.insert(index).inserted {
                found.append(heartbeat.name)
            }
        }
        return found
    }

    /// Every actor either finished or is stuck.
    var allFinishedOrStuck: Bool {
        heartbeats.indices.allSatisfy { stuck.contains($0) || heartbeats[$0].finished.load(ordering: .acquiring) }
    }

    /// Every actor is stuck: the run cannot go on.
    var nothingMoves: Bool { !heartbeats.isEmpty && stuck.count == heartbeats.count }
}
