#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif
import CLabSyncShims
import Synchronization

/// The deterministic scheduler: real threads, but only one runs at a time,
/// and at every scheduling point (every lock, trylock and unlock of a
/// monitor or spin lock, every wait, spin, sleep, yield, spawn and join) a
/// seeded strategy decides whether the running thread hands over, and to
/// whom. Time is virtual: each step advances the clock by
/// `nanosecondsPerStep`, sleeps and timeouts wait for the clock, and when
/// every thread is blocked or asleep the clock jumps to the next wake-up.
///
/// Guarantees:
/// - at any moment at most one thread the scheduler made runs code outside
///   the scheduler (the others wait on their gates, or, handing over in user
///   space, have their contexts saved while the one kernel thread of the
///   run, the carrier, runs another: `Configuration.handsOverInUserSpace`);
/// - a run of the same program with the same configuration takes the same
///   steps in the same order (`ScheduleStatistics.digest`), provided the
///   program's own choices depend only on what the scheduler gives it
///   (its clock, its interleaving, seeded random numbers): a thread made
///   elsewhere, the wall clock, or iteration over addresses breaks that;
/// - a run in which every live thread is blocked with no timeout ends with a
///   `DeadlockReport` naming what each thread waits for, instead of hanging.
///
/// Use: make one per run, `run { ... }` the program's main body on a thread
/// of its own, and build every primitive the program uses from a
/// `SyncDomain(scheduler:)` with this scheduler.
public final class ControlledScheduler: Scheduler, @unchecked Sendable {
    // @unchecked: every mutable field is guarded by `mutex`, and only the
    // current thread changes scheduling state (the few foreign-thread paths
    // take the mutex too); `clock` and `stepCount` are atomics so any
    // thread may read them.

    /// How a run is scheduled.
    public struct Configuration: Sendable, Hashable {
        public var strategy: ScheduleStrategy
        public var seed: UInt64
        /// Virtual time each scheduling point costs.
        public var nanosecondsPerStep: UInt64 = 100
        /// PCT: the number of steps `k` the change points are drawn over (the
        /// run's expected length; a longer run has no change point past it).
        public var horizon: UInt64 = 100_000
        /// PCT: a thread that has run this many steps (in all, since its
        /// priority last dropped) while another is runnable goes below every
        /// other, as a preempted thread would; 0 turns it off.
        public var timeSlice: UInt64 = 10_000
        /// Steps in which only spinning threads run before the run is called a livelock.
        public var livelockSteps: UInt64 = 200_000
        /// How many of the last steps `recentSteps` keeps (0: none).
        public var keptSteps: Int = 0
        /// Steps past this one are not kept (nil: the ring keeps the run's
        /// last steps): a replay keeps the steps before a finding.
        public var keepStepsUntil: UInt64? = nil
        /// Real seconds without a scheduling point after which standard
        /// error is told which thread is running without calling in (it
        /// cannot be preempted: every other thread waits); 0: never.
        public var stallWarningSeconds: Int = 10
        /// Follow these choices up to their `through` step, then the
        /// strategy (`ControlledScheduler+Choices.swift`).
        public var choices: ScheduleChoices? = nil
        /// Write down every decision that differs from the default rule
        /// (`recordedChoices`): what replays the run, or a shrinker cuts down.
        public var recordsChoices = false
        /// A run that reaches this step ends there, as a deadlock does (a
        /// `DeadlockReport` of kind `.stepLimit`): a bound on a run that
        /// might not end (nil: none).
        public var stepLimit: UInt64? = nil
        /// Hold every thread of the run to one processor (chosen round-robin
        /// by process and run among those the caller may use). Only one
        /// runs at a time anyway, and a hand-over then wakes a thread on
        /// the processor the sleeper leaves, with no cross-processor
        /// wake-up (measured on reclaim-storm under pct:3: 27% less CPU
        /// time, half the system time). Where threads run is no part of the
        /// schedule: a run replays the same either way. Off: the operating
        /// system places them.
        public var usesOneProcessor = true
        /// Hand over in user space: one kernel thread (the carrier, the
        /// root's) runs every thread of the run in turn, switching stacks
        /// and thread pointers, while the others' kernel threads stay parked
        /// (`CLabSyncShims.h`, "Borrowed threads"). Each thread keeps its own
        /// stack and thread-local storage. A hand-over then costs a few
        /// dozen nanoseconds where waking one kernel thread and putting
        /// another to sleep costs microseconds. The schedule is the same
        /// either way: a run replays step for step in both. Off (or on a
        /// machine other than x86-64): every thread waits on its gate in the kernel.
        public var handsOverInUserSpace = ControlledScheduler.canHandOverInUserSpace
        /// Handing over in user space, write the thread pointer with a
        /// system call (`arch_prctl`) even where the CPU instruction is
        /// allowed: what a machine without FSGSBASE does, for tests.
        public var writesThreadPointerBySystemCall = false

        public init(strategy: ScheduleStrategy, seed: UInt64) {
            self.strategy = strategy
            self.seed = seed
        }
    }

    /// How `run` ended.
    public enum Outcome<Result: Sendable>: Sendable {
        /// The root body returned. `leftBehind`: threads that had not finished
        /// (they stay parked for ever).
        case finished(Result, leftBehind: [String])
        /// The run could not go on; the threads stay parked for ever.
        case deadlocked(DeadlockReport)
    }

    public let configuration: Configuration

    // MARK: State (guarded by `mutex`)

    let mutex: StateLock
    /// Broadcast when the run ends (the caller of `run` waits on it).
    let runEnded = StateCondition()
    /// Broadcast whenever a foreign thread may have something to re-check.
    let foreignChanged = StateCondition()
    var threads: [ScheduledThread] = []
    /// Threads made so far (the records are dropped when a run ends clean).
    var threadsMade = 0
    /// Every thread's name, by index (kept when the records go).
    var names: [String] = []
    var current: ScheduledThread? = nil
    var enabledCount = 0
    var rng: SplitMix64
    /// The earliest deadline of a timed block (`UInt64.max`: none).
    var nextDeadline: UInt64 = .max
    var switches: UInt64 = 0
    var digest: UInt64 = 0xcbf2_9ce4_8422_2325
    var recent: [ScheduleStep] = []
    var recentNext = 0
    var nextMonitorSerial: UInt32 = 0
    /// Names of monitors by serial and of spin locks by name hash, for
    /// describing kept steps (filled only when steps are kept).
    var monitorNames: [UInt32: String] = [:]
    var spinNames: [UInt32: String] = [:]
    /// Consecutive steps in which every runnable thread was spinning.
    var spinOnlySteps: UInt64 = 0
    var started = false
    var stopped = false
    var deadlock: DeadlockReport? = nil
    var rootResult: (any Sendable)? = nil
    var rootFinished = false
    var foreignNames: [String] = []
    var foreignSeen = false
    // PCT
    var priorityChanges: [(step: UInt64, priority: Int64)] = []
    var nextChange = 0
    /// The step of `priorityChanges[nextChange]` (`UInt64.max`: none left),
    /// so a point compares one word.
    var nextChangeStep: UInt64 = .max
    var lowestPriority: Int64 = 0
    var priorityOrderChanged = true
    // Choices (ControlledScheduler+Choices.swift)
    var decisions: UInt64 = 0
    var nextListed = 0
    var choicesFollowed = 0
    var recorded: [ScheduleChoice] = []
    /// `configuration.choices?.through` (read at every decision: a copy of
    /// the list would be retained and released each time).
    let choicesThrough: UInt64?
    /// Whether this run hands over in user space (`Configuration.handsOverInUserSpace`, where supported).
    let borrowsThreads: Bool
    /// A hand-over in user space writes the thread pointer with `wrfsbase` (else `arch_prctl`).
    let writesThreadPointerDirectly: Int32
    /// A finished thread whose kernel thread is woken to exit once the
    /// carrier has switched away from it (the next context to run does it).
    var exiting: ScheduledThread? = nil
    /// The processor every thread of the run is held to (-1: any; see
    /// `Configuration.usesOneProcessor`), chosen before the first thread starts.
    var processor: Int32 = -1

    let clock = Atomic<UInt64>(0)
    let stepCount = Atomic<UInt64>(0)

    public init(_ configuration: Configuration) {
        precondition(configuration.nanosecondsPerStep > 0, "a step must cost some virtual time")
        self.configuration = configuration
        choicesThrough = configuration.choices?.through
        borrowsThreads = configuration.handsOverInUserSpace && Self.canHandOverInUserSpace
        writesThreadPointerDirectly = !configuration.writesThreadPointerBySystemCall && mmulab_fiber_can_write_thread_pointer() != 0 ? 1 : 0
        mutex = StateLock(biased: borrowsThreads)
        rng = SplitMix64(seed: configuration.seed ^ 0x5CED_0000_0000_0001)
        if case .pct(let depth) = configuration.strategy {
            precondition(depth >= 1 && depth <= ScheduleStrategy.maximumDepth, "pct depth \(depth) out of range")
            let horizon = max(configuration.horizon, 1)
            // Change point i (1 ... d-1) lowers the running thread to priority i:
            // below every initial priority (>= d), in the paper's order.
            for i in 1..<max(depth, 1) {
                priorityChanges.append((step: 1 + rng.next() % horizon, priority: Int64(i)))
            }
            priorityChanges.sort { $0.step < $1.step }
            noteNextChange()
        }
    }

    /// Whether this machine can hand over in user space (x86-64).
    public static let canHandOverInUserSpace = mmulab_fiber_supported() != 0

    /// Controlled runs started in this process (spreads them over processors).
    static let runsStarted = Atomic<Int>(0)

    public convenience init(strategy: ScheduleStrategy, seed: UInt64) {
        self.init(Configuration(strategy: strategy, seed: seed))
    }

    deinit {
        // Threads left parked keep a reference to the scheduler, so this
        // runs only when none is.
        foreignChanged.deallocate()
        runEnded.deallocate()
        mutex.deallocate()
    }

    // MARK: Running a program

    /// Runs `body` as the root thread of a controlled run named `name`, and
    /// returns when it has returned (or the run deadlocked). Call it once, from
    /// a thread no controlled scheduler made.
    public func run<Result: Sendable>(named name: String = "main", _ body: @escaping @Sendable () -> Result) -> Outcome<Result> {
        precondition(scheduledSelf() == nil, "ControlledScheduler.run called from a scheduled thread")
        mutex.lock()
        precondition(!started, "a ControlledScheduler runs one program")
        started = true
        if configuration.usesOneProcessor {
            // A process's first run stays on the processor the kernel put
            // the caller on (parallel processes, a campaign's jobs, stay
            // spread as the load balancer spread them); the process's later
            // runs, which may overlap (parallel tests), take the next ones.
            let serial = Self.runsStarted.add(1, ordering: .relaxed).newValue
            processor = mmulab_pick_cpu(UInt32(truncatingIfNeeded: serial &- 1))
        }
        let root = makeThread(named: name)
        current = root
        root.runSince = 0
        startThread(root) { [self] in
            let value = body()
            mutex.lock()
            rootResult = value
            mutex.unlock()
        }
        // The root waits for the mutex, which the wait below lets go.
        mmulab_gate_open(root.gate)
        if configuration.stallWarningSeconds > 0 { startStallWatch() }
        while deadlock == nil && !rootFinished { runEnded.wait(mutex) }
        let outcome: Outcome<Result>
        if let deadlock {
            outcome = .deadlocked(deadlock)
        } else {
            let left = threads.filter { !$0.isFinished }.map(\.name)
            outcome = .finished(rootResult as! Result, leftBehind: left)
            // Nothing will run again: drop the records (and their cycles).
            if left.isEmpty { threads.removeAll() }
        }
        mutex.unlock()
        return outcome
    }

    /// The run so far.
    public var statistics: ScheduleStatistics {
        mutex.lock()
        defer { mutex.unlock() }
        return ScheduleStatistics(
            steps: stepCount.load(ordering: .relaxed), switches: switches, virtualNanoseconds: clock.load(ordering: .relaxed),
            threads: threadsMade, digest: digest, foreignThreads: foreignNames, decisions: decisions, choicesFollowed: choicesFollowed,
            choicesSkipped: (configuration.choices?.choices.count ?? 0) - choicesFollowed)
    }

    /// The last `configuration.keptSteps` steps, oldest first.
    public var recentSteps: [ScheduleStep] {
        mutex.lock()
        defer { mutex.unlock() }
        guard recent.count == configuration.keptSteps else { return recent }
        return Array(recent[recentNext...] + recent[..<recentNext])
    }

    public func state(ofThreadNamed name: String) -> String? {
        mutex.lock()
        defer { mutex.unlock() }
        guard let thread = threads.first(where: { $0.name == name }) else { return nil }
        let state: String
        switch thread.status {
        case .finished: state = "finished"
        case .blocked: state = "blocked"
        case .enabled: state = thread.yielded ? "spinning" : (current === thread ? "running" : "runnable")
        }
        guard let waitingFor = thread.waitingFor else { return state }
        return "\(state) in \(waitingFor)"
    }

    /// A kept step as a person reads it: "step 12: 'shader-0' lock 'gpu vm'".
    public func describe(_ step: ScheduleStep) -> String {
        let (thread, operation) = describeParts(step)
        return "step \(step.step): '\(thread)' \(operation)"
    }

    /// A kept step's thread name and operation ("lock 'gpu vm'").
    public func describeParts(_ step: ScheduleStep) -> (thread: String, operation: String) {
        mutex.lock()
        defer { mutex.unlock() }
        let thread = Int(step.thread) < names.count ? names[Int(step.thread)] : "thread #\(step.thread)"
        let object: String
        switch step.kind {
        case .lock, .tryLock, .unlock, .wait, .timedWait: object = monitorNames[step.object].map { " '\($0)'" } ?? ""
        case .spinLock, .spinTryLock, .spinUnlock, .spin, .yield: object = spinNames[step.object].map { $0.isEmpty ? "" : " '\($0)'" } ?? ""
        case .spawn, .join, .start, .exit:
            object = Int(step.object) < names.count ? " '\(names[Int(step.object)])'" : ""
        case .sleep, .preemption: object = ""
        }
        return (thread, "\(step.kind)\(object)")
    }

    /// The names of the threads, by index (a trace's `thread`).
    public var threadNames: [String] {
        mutex.lock()
        defer { mutex.unlock() }
        return names
    }

    // MARK: Scheduler

    public var isControlled: Bool { true }

    public func makeMonitor() -> any Monitor { makeMonitor(named: "") }

    public func makeMonitor(named name: String) -> any Monitor {
        mutex.lock()
        nextMonitorSerial &+= 1
        let serial = nextMonitorSerial
        if configuration.keptSteps > 0 { monitorNames[serial] = name }
        mutex.unlock()
        return ControlledMonitor(name: name, serial: serial, scheduler: self)
    }

    public func spawn(name: String, _ body: @escaping @Sendable () -> Void) -> any ThreadHandle {
        mutex.lock()
        let thread = makeThread(named: name)
        startThread(thread, body)
        if let me = scheduledSelf() {
            point(me, .spawn, object: UInt32(thread.index))
        } else {
            noteForeign()
            foreignChanged.broadcast()
        }
        mutex.unlock()
        return ScheduledThreadHandle(thread)
    }

    func join(_ thread: ScheduledThread) {
        mutex.lock()
        defer { mutex.unlock() }
        guard let me = scheduledSelf() else {
            noteForeign()
            thread.foreignJoiners += 1
            while !thread.isFinished { foreignChanged.wait(mutex) }
            thread.foreignJoiners -= 1
            return
        }
        precondition(thread !== me, "thread '\(me.name)' joins itself")
        point(me, .join, object: UInt32(thread.index))
        guard !thread.isFinished else { return }
        thread.joiners.append(me)
        block(me, on: WaitSite(kind: .join, object: thread.name, site: nil))
        switchAway(me)
        assert(thread.isFinished, "'\(me.name)' woke from join before '\(thread.name)' finished")
    }

    public func sleep(for duration: Duration) {
        let nanoseconds = Self.nanoseconds(duration)
        mutex.lock()
        guard let me = scheduledSelf() else {
            noteForeign()
            mutex.unlock()
            FreeRunningScheduler().sleep(for: duration)
            return
        }
        if nanoseconds == 0 {
            point(me, .sleep, object: 0)
        } else {
            block(me, on: WaitSite(kind: .sleep, object: "", site: nil))
            setDeadline(me, after: nanoseconds)
            tick(me, .sleep, object: 0)
            switchAway(me)
        }
        mutex.unlock()
    }

    public func spinWait(attempt: Int) {
        schedulingPoint(.spin, object: "", site: SourceSite())
    }

    public func yield() {
        schedulingPoint(.yield, object: "", site: SourceSite())
    }

    public func schedulingPoint(_ kind: SchedulingPointKind, object: String, site: SourceSite) {
        point(kind, object: object.isEmpty ? Self.emptyNameHash : Self.nameHash(object), name: object, site: site)
    }

    /// `schedulingPoint` with the object's name already hashed (`nameHash(name)`):
    /// what `SpinLock` and `SyncDomain.preemptionPoint` call on every lock,
    /// unlock and loop turn.
    func point(_ kind: SchedulingPointKind, object hash: UInt32, name: String, site: SourceSite) {
        mutex.lock()
        withScheduledSelf({ me in
            let spinning = kind == .spin || kind == .yield
            if spinning { me.waitingFor = WaitSite(kind: kind, object: name, site: site) }
            if configuration.keptSteps > 0, spinNames[hash] == nil { spinNames[hash] = name }
            point(me, kind, object: hash, yielding: spinning)
            if spinning { me.waitingFor = nil }
            mutex.unlock()
        }, foreign: { foreignPoint(kind) })
    }

    /// A scheduling point reached by a thread this scheduler did not make (mutex held; lets go of it).
    private func foreignPoint(_ kind: SchedulingPointKind) {
        noteForeign()
        mutex.unlock()
        if kind == .spin || kind == .yield { sched_yield() }
    }

    /// `nameHash("")` (FNV-1a's offset basis): the object of a point that names none.
    static var emptyNameHash: UInt32 { 0x811C_9DC5 }

    public func now() -> Duration { .nanoseconds(Int64(clamping: clock.load(ordering: .relaxed))) }
    public func nowNanoseconds() -> UInt64 { clock.load(ordering: .relaxed) }

    public func schedulesCurrentThread() -> Bool { scheduledSelf() != nil }

    public func currentStep() -> UInt64? { stepCount.load(ordering: .relaxed) }

    /// The thread's index + 1 (a foreign thread's context serial, above 2^32).
    public func currentThreadID() -> UInt64 {
        guard let me = scheduledSelf() else { return ExecutionContext.current.serial }
        return UInt64(me.index) + 1
    }

    // MARK: Threads

    /// The calling thread's record, if this scheduler made it. The
    /// thread-local word is unretained: the thread's start routine keeps its
    /// record alive while it runs (`ThreadStart`), and clears the word
    /// before it lets go.
    @inline(__always)
    func scheduledSelf() -> ScheduledThread? {
        guard let raw = mmulab_current_scheduled() else { return nil }
        let thread = Unmanaged<ScheduledThread>.fromOpaque(raw).takeUnretainedValue()
        return thread.schedulerID == ObjectIdentifier(self) ? thread : nil
    }

    /// Runs `scheduled` with the calling thread's record if this scheduler
    /// made it, else `foreign`. The record is borrowed, not retained (the
    /// hot paths' `scheduledSelf`): the thread's start routine holds it for
    /// as long as the thread runs.
    @inline(__always)
    func withScheduledSelf<R>(_ scheduled: (ScheduledThread) -> R, foreign: () -> R) -> R {
        guard let raw = mmulab_current_scheduled() else { return foreign() }
        return Unmanaged<ScheduledThread>.fromOpaque(raw)._withUnsafeGuaranteedRef { me in
            me.schedulerID == ObjectIdentifier(self) ? scheduled(me) : foreign()
        }
    }

    /// Records a foreign thread's use of the scheduler (mutex held).
    func noteForeign() {
        foreignSeen = true
        guard foreignNames.count < 8 else { return }
        let name = ExecutionContext.current.thread.description
        if !foreignNames.contains(name) { foreignNames.append(name) }
    }

    static func nanoseconds(_ duration: Duration) -> UInt64 {
        let (seconds, attoseconds) = duration.components
        guard seconds >= 0, attoseconds >= 0 || seconds > 0 else { return 0 }
        let total = seconds.multipliedReportingOverflow(by: 1_000_000_000)
        if total.overflow { return .max }
        let sum = total.partialValue.addingReportingOverflow(attoseconds / 1_000_000_000)
        return sum.overflow || sum.partialValue < 0 ? (sum.overflow ? .max : 0) : UInt64(sum.partialValue)
    }

    /// A stable number for a name (FNV-1a, 32 bits), for traces.
    static func nameHash(_ name: String) -> UInt32 {
        var hash: UInt32 = 0x811C_9DC5
        for byte in name.utf8 { hash = (hash ^ UInt32(byte)) &* 0x0100_0193 }
        return hash
    }
}
