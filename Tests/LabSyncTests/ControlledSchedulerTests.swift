import LabSync
import Synchronization
import TestSupport
import Testing

/// A value only the running thread of a controlled run touches (tests use it
/// to show that two threads never run between the same scheduling points).
final class Unsynchronised<Value>: @unchecked Sendable {
    var value: Value
    init(_ value: Value) { self.value = value }
}

/// Runs `body` under a controlled scheduler and returns its result, or
/// records an issue naming the seed if the run deadlocked.
func controlled<R: Sendable>(
    _ strategy: ScheduleStrategy, seed: UInt64, keep: Int = 0, horizon: UInt64 = 100_000, oneProcessor: Bool = true,
    inUserSpace: Bool = ControlledScheduler.canHandOverInUserSpace, threadPointerBySystemCall: Bool = false,
    _ body: @escaping @Sendable (SyncDomain) -> R
) -> (R?, ScheduleStatistics, [ScheduleStep]) {
    var configuration = ControlledScheduler.Configuration(strategy: strategy, seed: seed)
    configuration.keptSteps = keep
    configuration.horizon = horizon
    configuration.usesOneProcessor = oneProcessor
    configuration.handsOverInUserSpace = inUserSpace
    configuration.writesThreadPointerBySystemCall = threadPointerBySystemCall
    let scheduler = ControlledScheduler(configuration)
    let domain = SyncDomain(scheduler: scheduler)
    switch scheduler.run({ body(domain) }) {
    case .finished(let value, let left):
        #expect(left.isEmpty, "threads left behind with \(strategy) seed \(seed): \(left)")
        return (value, scheduler.statistics, scheduler.recentSteps)
    case .deadlocked(let report):
        Issue.record("\(strategy) seed \(seed) deadlocked:\n\(report)")
        return (nil, scheduler.statistics, scheduler.recentSteps)
    }
}

@Suite("The controlled scheduler")
struct ControlledSchedulerTests {
    static let strategies: [ScheduleStrategy] = [.random(switchProbability: 0.1), .random(switchProbability: 1), .pct(depth: 1), .pct(depth: 3)]

    @Test func strategiesParseAndPrintBack() {
        for text in ["random", "random:0.25", "random:1", "pct", "pct:1", "pct:3", "pct:16"] {
            let strategy = ScheduleStrategy(parsing: text)
            #expect(strategy != nil, "\(text)")
            if let strategy { #expect(ScheduleStrategy(parsing: strategy.description) == strategy) }
        }
        #expect(ScheduleStrategy(parsing: "pct")! == .pct(depth: ScheduleStrategy.defaultDepth))
        for bad in ["", "pct:0", "pct:17", "pct:x", "random:0", "random:1.5", "random:-1", "fifo", "pct:3:4", "random:nan"] {
            #expect(ScheduleStrategy(parsing: bad) == nil, "\(bad) was accepted")
        }
    }

    /// Mutual exclusion and a correct total under every strategy, with many
    /// threads, and no two threads ever between the same two points.
    @Test(arguments: strategies)
    func locksCountCorrectlyAndOneThreadRunsAtATime(_ strategy: ScheduleStrategy) {
        let threads = 16
        let rounds = 50 * stressScale
        for seed in testSeed..<testSeed + 4 {
            let (result, statistics, _) = controlled(strategy, seed: seed) { domain -> [Int] in
                let sleeping = SleepingLock("counter", domain: domain)
                let spin = SpinLock("spin counter", domain: domain)
                let counters = Unsynchronised([0, 0])
                let inside = Unsynchronised(0)
                let overlaps = Unsynchronised(0)
                let handles = (0..<threads).map { index in
                    domain.spawnThread(named: "worker-\(index)") {
                        for round in 0..<rounds {
                            // Between two points only this thread runs.
                            inside.value += 1
                            if inside.value != 1 { overlaps.value += 1 }
                            inside.value -= 1
                            if round % 2 == 0 {
                                sleeping.withLock { counters.value[0] += 1 }
                            } else {
                                spin.withLock { counters.value[1] += 1 }
                            }
                            if round % 7 == index % 7 { domain.yield() }
                        }
                    }
                }
                for handle in handles { handle.join() }
                return counters.value + [overlaps.value]
            }
            #expect(result == [threads * ((rounds + 1) / 2), threads * (rounds / 2), 0], "\(strategy) seed \(seed)")
            #expect(statistics.threads == threads + 1)
            #expect(statistics.steps > UInt64(threads * rounds * 2), "\(strategy) seed \(seed): every lock is a step")
        }
    }

    /// A program exercising every primitive, whose output depends on the
    /// interleaving: the order in which threads got through each stage.
    static func mixedProgram(_ domain: SyncDomain, threads: Int, rounds: Int) -> [Int] {
        let log = Unsynchronised([Int]())
        let logLock = SleepingLock("log", domain: domain)
        let rw = SleepingRWLock("table", domain: domain)
        let spin = SpinLock("spin", domain: domain)
        let queue = WaitQueue("turns", domain: domain)
        let turn = Atomic<Int>(0)
        let done = Completion("done", domain: domain)
        let handles = (0..<threads).map { index in
            domain.spawnThread(named: "mixed-\(index)") {
                for round in 0..<rounds {
                    logLock.withLock { log.value.append(index * 1_000 + round) }
                    if round % 3 == 0 {
                        rw.withShared { _ = log.value.count }
                    } else {
                        rw.withExclusive { log.value.append(-index) }
                    }
                    spin.withLock { log.value.append(10_000 + index) }
                    if round % 4 == index % 4 { domain.sleep(for: .microseconds(50 + index)) }
                    if round == rounds / 2 {
                        // Every thread passes in index order: a wait queue.
                        queue.wait { turn.load(ordering: .acquiring) == index }
                        turn.store(index + 1, ordering: .releasing)
                        queue.wakeAll()
                    }
                }
                if index == threads - 1 { done.completeAll() }
            }
        }
        #expect(done.wait(timeout: .seconds(3600)), "the last thread completes")
        let child = domain.spawnThread(named: "late") { logLock.withLock { log.value.append(-1) } }
        child.join()
        for handle in handles { handle.join() }
        return logLock.withLock { log.value } + [Int(domain.now().components.seconds)]
    }

    /// The same seed gives the same schedule, step by step, and the same
    /// output; another seed another schedule.
    @Test(arguments: strategies)
    func theSameSeedReplaysTheSameSchedule(_ strategy: ScheduleStrategy) {
        let threads = 12
        let rounds = 20 * stressScale
        var digests = Set<UInt64>()
        for seed in testSeed..<testSeed + 3 {
            let first = controlled(strategy, seed: seed, keep: 1 << 20) { Self.mixedProgram($0, threads: threads, rounds: rounds) }
            let second = controlled(strategy, seed: seed, keep: 1 << 20) { Self.mixedProgram($0, threads: threads, rounds: rounds) }
            #expect(first.0 != nil && first.0 == second.0, "\(strategy) seed \(seed): the output differs")
            #expect(first.1 == second.1, "\(strategy) seed \(seed): \(first.1) vs \(second.1)")
            #expect(first.2.count == Int(first.1.steps), "the trace kept every step")
            if first.2 != second.2 {
                let at = Array(zip(first.2, second.2)).firstIndex { $0 != $1 } ?? min(first.2.count, second.2.count)
                Issue.record("\(strategy) seed \(seed): the traces part at step \(at + 1)")
            }
            digests.insert(first.1.digest)
        }
        #expect(digests.count == 3, "\(strategy): three seeds, \(digests.count) schedules")
    }

    /// Holding a run's threads to one processor (the default) or letting
    /// the operating system place them gives the same run, step by step.
    @Test(arguments: strategies)
    func whereTheThreadsRunIsNoPartOfTheSchedule(_ strategy: ScheduleStrategy) {
        let program: @Sendable (SyncDomain) -> [Int] = { Self.mixedProgram($0, threads: 12, rounds: 20 * stressScale) }
        let held = controlled(strategy, seed: testSeed, keep: 1 << 20, oneProcessor: true, program)
        let placed = controlled(strategy, seed: testSeed, keep: 1 << 20, oneProcessor: false, program)
        #expect(held.0 != nil && held.0 == placed.0, "\(strategy): the output differs")
        #expect(held.1 == placed.1, "\(strategy): \(held.1) vs \(placed.1)")
        #expect(held.2 == placed.2, "\(strategy): the traces differ")
    }

    @Test func virtualTimeJumpsWhenEveryoneSleeps() {
        let (result, statistics, _) = controlled(.pct(depth: 2), seed: testSeed) { domain -> [Duration] in
            let start = domain.now()
            let sleeper = domain.spawnThread(named: "sleeper") { domain.sleep(for: .seconds(30)) }
            let never = Completion("never", domain: domain)
            let timedOut = !never.wait(timeout: .seconds(5))
            let afterTimeout = domain.now() - start
            sleeper.join()
            let afterSleep = domain.now() - start
            let queue = WaitQueue("queue", domain: domain)
            let waited = queue.wait(timeout: .milliseconds(7)) { false }
            return [timedOut ? .zero : .seconds(-1), afterTimeout, afterSleep, waited ? .seconds(-1) : domain.now() - start]
        }
        guard let result else { return }
        #expect(result[0] == .zero, "a completion nobody completes times out")
        #expect(result[1] >= .seconds(5) && result[1] < .seconds(6), "\(result[1])")
        #expect(result[2] >= .seconds(30) && result[2] < .seconds(31), "\(result[2])")
        #expect(result[3] >= .milliseconds(30_007) && result[3] < .seconds(31), "\(result[3])")
        #expect(statistics.steps < 1_000, "the clock jumped instead of stepping: \(statistics.steps) steps")
    }

    @Test func aDeadlockIsReportedWithEveryThreadsWaitSite() {
        let scheduler = ControlledScheduler(strategy: .random(switchProbability: 0.5), seed: testSeed)
        let domain = SyncDomain(scheduler: scheduler)
        let lockLine: UInt = #line + 6
        let outcome = scheduler.run(named: "root") { () -> Int in
            let lock = SleepingLock("table lock", domain: domain)
            lock.lock()
            // The child needs the lock the root holds while it joins the child.
            let child = domain.spawnThread(named: "child") {
                lock.lock()
                lock.unlock()
            }
            child.join()
            return 1
        }
        guard case .deadlocked(let report) = outcome else {
            Issue.record("a deadlock went unreported: \(outcome)")
            return
        }
        #expect(report.kind == .deadlock)
        #expect(report.threads.map(\.name) == ["root", "child"])
        #expect(report.threads.allSatisfy { $0.state == "blocked" })
        #expect(report.threads[0].waitingFor?.kind == .join && report.threads[0].waitingFor?.object == "child")
        #expect(report.threads[1].waitingFor?.kind == .lock && report.threads[1].waitingFor?.object == "table lock")
        #expect(report.threads[1].waitingFor?.site?.line == lockLine, "\(report)")
        #expect("\(report)".contains("ControlledSchedulerTests.swift:\(lockLine)"), "\(report)")
    }

    @Test func spinningOnALockWhoseHolderIsBlockedIsALivelock() {
        var configuration = ControlledScheduler.Configuration(strategy: .pct(depth: 2), seed: testSeed)
        configuration.livelockSteps = 5_000
        let scheduler = ControlledScheduler(configuration)
        let domain = SyncDomain(scheduler: scheduler)
        let outcome = scheduler.run { () -> Int in
            let spin = SpinLock("device lock", domain: domain)
            let never = Completion("never", domain: domain)
            spin.lock()
            let spinner = domain.spawnThread(named: "spinner") { spin.withLock {} }
            never.wait()  // a sleep under a spin lock: the holder never comes back
            spinner.join()
            return 0
        }
        guard case .deadlocked(let report) = outcome else {
            Issue.record("a livelock went unreported")
            return
        }
        #expect(report.kind == .livelock, "\(report)")
        #expect(report.threads.first { $0.name == "spinner" }?.state == "spinning", "\(report)")
        #expect(report.threads.first { $0.name == "spinner" }?.waitingFor?.object == "device lock", "\(report)")
        #expect(report.threads.first { $0.name == "main" }?.waitingFor?.object == "never", "\(report)")
        #expect(domain.contextViolations.count == 1, "the sleep under the spin lock is a context violation too")
    }

    /// A lost update that needs the second thread to run inside the first
    /// one's read-modify-write: a bug of depth 2 (two ordering constraints).
    /// PCT with depth 2 must find it with probability at least 1 / (n k),
    /// n threads and k steps (Burckhardt et al., theorem 9).
    @Test func pctFindsADepthTwoRaceWithinItsBound() {
        let program = lostUpdate  // ScheduleChoicesTests.swift
        // k: the steps of a run (every run of this program takes the same number).
        let (_, probe, _) = controlled(.pct(depth: 1), seed: 0) { program($0) }
        let k = probe.steps
        let n: UInt64 = 3
        let runs: UInt64 = 4 * n * k
        var found: UInt64 = 0
        var firstSeed: UInt64? = nil
        for seed in testSeed..<testSeed + runs {
            let (value, _, _) = controlled(.pct(depth: 2), seed: seed, horizon: k) { program($0) }
            if value == 1 {
                found += 1
                if firstSeed == nil { firstSeed = seed }
            }
        }
        let bound = Double(runs) / Double(n * k)
        print("pct:2 found the depth-2 lost update in \(found) of \(runs) runs (k = \(k) steps, n = \(n) threads, bound \(bound))")
        #expect(Double(found) >= bound, "pct:2 found the lost update in \(found) of \(runs) runs (k = \(k), bound \(bound)), seeds from \(testSeed)")
        // Depth 1 (no change point) never preempts inside a's two sections.
        var foundAtDepthOne = 0
        for seed in testSeed..<testSeed + 200 {
            if controlled(.pct(depth: 1), seed: seed, horizon: k, { program($0) }).0 == 1 { foundAtDepthOne += 1 }
        }
        #expect(foundAtDepthOne == 0, "pct:1 cannot find a depth-2 bug, found it \(foundAtDepthOne) times")
        if let firstSeed {
            // The failing seed replays the failure.
            #expect(controlled(.pct(depth: 2), seed: firstSeed, horizon: k) { program($0) }.0 == 1, "seed \(firstSeed) replays the lost update")
        }
    }

    /// PCT never starves a runnable thread: two threads that hand a token
    /// back and forth (each running a little between the other's turns)
    /// still use up their time slices, so a third, lower-priority thread
    /// gets to run within a few slices.
    @Test func pctStarvesNobody() {
        for seed in testSeed..<testSeed + 20 {
            var configuration = ControlledScheduler.Configuration(strategy: .pct(depth: 1), seed: seed)
            configuration.timeSlice = 1_000
            let scheduler = ControlledScheduler(configuration)
            let domain = SyncDomain(scheduler: scheduler)
            let outcome = scheduler.run { () -> Int in
                let stop = Atomic<Bool>(false)
                let rounds = Atomic<Int>(0)
                let ping = Completion("ping", domain: domain)
                let pong = Completion("pong", domain: domain)
                let a = domain.spawnThread(named: "a") {
                    // Bounded, so a starving scheduler fails the test instead of hanging it.
                    while !stop.load(ordering: .relaxed) && rounds.add(1, ordering: .relaxed).newValue < 200_000 {
                        ping.complete()
                        pong.wait()
                    }
                    ping.completeAll()
                }
                let b = domain.spawnThread(named: "b") {
                    while !stop.load(ordering: .relaxed) && rounds.load(ordering: .relaxed) < 200_000 {
                        ping.wait()
                        pong.complete()
                    }
                    pong.completeAll()
                }
                let c = domain.spawnThread(named: "c") { stop.store(true, ordering: .relaxed) }
                c.join()
                a.join()
                b.join()
                return rounds.load(ordering: .relaxed)
            }
            guard case .finished(let rounds, _) = outcome else {
                Issue.record("seed \(seed): \(outcome)")
                continue
            }
            #expect(rounds < 20_000, "seed \(seed): the third thread waited \(rounds) rounds of the other two")
        }
    }

    /// A thread the scheduler did not make still gets mutual exclusion, and
    /// is named in the statistics (the run is not reproducible).
    @Test func aForeignThreadIsRecordedAndExcluded() {
        let (result, statistics, _) = controlled(.random(switchProbability: 0.5), seed: testSeed) { domain -> Int in
            let lock = SleepingLock("shared", domain: domain)
            let counter = Unsynchronised(0)
            let stray = FreeRunningScheduler().spawn(name: "stray") {
                for _ in 0..<200 { lock.withLock { counter.value += 1 } }
            }
            let mine = domain.spawnThread(named: "mine") {
                for _ in 0..<200 { lock.withLock { counter.value += 1 } }
            }
            mine.join()
            stray.join()
            return lock.withLock { counter.value }
        }
        #expect(result == 400)
        #expect(statistics.foreignThreads.contains { $0.contains("stray") }, "\(statistics.foreignThreads)")
    }
}
