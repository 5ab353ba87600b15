import LabSync
import Synchronization
import TestSupport
import Testing

/// Runs `body` under a controlled scheduler with `configure` applied to
/// its configuration; the outcome and the scheduler (for its statistics
/// and recorded choices).
func controlledRun<R: Sendable>(
    _ strategy: ScheduleStrategy, seed: UInt64, configure: (inout ControlledScheduler.Configuration) -> Void = { _ in },
    _ body: @escaping @Sendable (SyncDomain) -> R
) -> (ControlledScheduler.Outcome<R>, ControlledScheduler) {
    var configuration = ControlledScheduler.Configuration(strategy: strategy, seed: seed)
    configure(&configuration)
    let scheduler = ControlledScheduler(configuration)
    let domain = SyncDomain(scheduler: scheduler)
    return (scheduler.run { body(domain) }, scheduler)
}

/// The value a finished run returned (nil, and an issue, if it deadlocked).
func finished<R>(_ outcome: ControlledScheduler.Outcome<R>, _ label: String) -> R? {
    switch outcome {
    case .finished(let value, _): return value
    case .deadlocked(let report):
        Issue.record("\(label): \(report)")
        return nil
    }
}

/// A lost update: `a` reads under the lock and writes back under it again,
/// so `b`'s increment is lost when `b` runs between the two (a race of
/// depth 2). Returns the final value: 1 when the update was lost.
@Sendable func lostUpdate(_ domain: SyncDomain) -> Int {
    let lock = SleepingLock("x", domain: domain)
    let x = Unsynchronised(0)
    let a = domain.spawnThread(named: "a") {
        let seen = lock.withLock { x.value }
        lock.withLock { x.value = seen + 1 }
    }
    let b = domain.spawnThread(named: "b") { lock.withLock { x.value += 1 } }
    a.join()
    b.join()
    return x.value
}

@Suite("Scheduling choices: recorded, replayed, cut down")
struct ScheduleChoicesTests {
    /// A run's recorded choices, followed, give the same run step for step,
    /// under every strategy; with recording on, the run itself is unchanged.
    @Test(arguments: ControlledSchedulerTests.strategies)
    func recordedChoicesReplayTheRun(_ strategy: ScheduleStrategy) throws {
        let program: @Sendable (SyncDomain) -> [Int] = { ControlledSchedulerTests.mixedProgram($0, threads: 6, rounds: 12) }
        for seed in testSeed..<testSeed + 3 {
            let label = "\(strategy) seed \(seed)"
            let (plain, plainScheduler) = controlledRun(strategy, seed: seed, program)
            let (recorded, recorder) = controlledRun(strategy, seed: seed, configure: { $0.recordsChoices = true }, program)
            #expect(finished(plain, label) == finished(recorded, label), "\(label): recording changed the run")
            #expect(plainScheduler.statistics.digest == recorder.statistics.digest, "\(label): recording changed the schedule")
            let choices = recorder.recordedChoices
            #expect(choices.through == recorder.statistics.steps)
            #expect(!choices.choices.isEmpty, "\(label): a seeded run deviates from round robin somewhere")
            let (replayed, follower) = controlledRun(strategy, seed: seed, configure: { $0.choices = choices; $0.recordsChoices = true }, program)
            #expect(finished(replayed, label) == finished(recorded, label), "\(label): the output differs")
            #expect(follower.statistics.digest == recorder.statistics.digest, "\(label): the schedule differs")
            #expect(follower.statistics.choicesFollowed == choices.choices.count && follower.statistics.choicesSkipped == 0)
            // Following the list, the run deviates where the list says and nowhere else.
            #expect(follower.recordedChoices.choices == choices.choices, "\(label)")
        }
    }

    /// The empty list is the default rule: no preemption, round robin when
    /// a thread stops; recording it writes nothing down; it replays.
    @Test func theEmptyListRunsRoundRobinWithoutPreemption() throws {
        let empty = try #require(ScheduleChoices([], through: .max))
        let program: @Sendable (SyncDomain) -> [Int] = { ControlledSchedulerTests.mixedProgram($0, threads: 5, rounds: 10) }
        var digests = Set<UInt64>()
        // The seed and strategy do not matter while the list governs.
        for strategy in ControlledSchedulerTests.strategies {
            let (outcome, scheduler) = controlledRun(strategy, seed: testSeed &+ 9, configure: { $0.choices = empty; $0.recordsChoices = true }, program)
            #expect(finished(outcome, "\(strategy)") != nil)
            #expect(scheduler.recordedChoices.choices.isEmpty, "\(strategy): \(scheduler.recordedChoices.choices.prefix(3))")
            digests.insert(scheduler.statistics.digest)
        }
        #expect(digests.count == 1, "the default rule depends on nothing but the program")
        // Non-preemptive: each thread of a lock-only program runs to its end in one go.
        let (_, scheduler) = controlledRun(.random(switchProbability: 1), seed: testSeed, configure: { $0.choices = empty }) { domain in
            let lock = SleepingLock("l", domain: domain)
            let handles = (0..<4).map { index in domain.spawnThread(named: "t\(index)") { for _ in 0..<50 { lock.withLock {} } } }
            for handle in handles { handle.join() }
        }
        // main spawns four and joins the first; each thread then runs to its
        // end and hands over: main, t0..t3, and main back at each join.
        #expect(scheduler.statistics.switches <= 10, "\(scheduler.statistics)")
    }

    /// A cut list governs the steps up to its `through`; after it the
    /// seeded strategy decides, and the whole still replays.
    @Test func aCutListHandsOverToTheStrategy() throws {
        let program: @Sendable (SyncDomain) -> [Int] = { ControlledSchedulerTests.mixedProgram($0, threads: 6, rounds: 12) }
        let (_, recorder) = controlledRun(.random(switchProbability: 0.2), seed: testSeed, configure: { $0.recordsChoices = true }, program)
        let whole = recorder.recordedChoices
        let cut = whole.cut(atStep: whole.through / 2)
        #expect(cut.choices.count < whole.choices.count && cut.choices.allSatisfy { $0.step <= whole.through / 2 })
        var runs: [(UInt64, [Int]?)] = []
        for _ in 0..<2 {
            let (outcome, scheduler) = controlledRun(.random(switchProbability: 0.2), seed: testSeed &+ 1, configure: { $0.choices = cut; $0.recordsChoices = true }, program)
            runs.append((scheduler.statistics.digest, finished(outcome, "cut")))
            #expect(scheduler.statistics.choicesFollowed == cut.choices.count)
            // Past `through` the strategy preempts again.
            #expect(scheduler.recordedChoices.choices.contains { $0.step > cut.through })
            // Up to it, the run followed the list exactly.
            #expect(scheduler.recordedChoices.cut(atStep: cut.through).choices == cut.choices)
        }
        #expect(runs[0].0 == runs[1].0 && runs[0].1 == runs[1].1)
    }

    /// A choice whose thread cannot run at its decision is skipped (the
    /// default decides) and counted; one naming a thread never made too.
    @Test func unusableChoicesAreSkipped() throws {
        let (_, recorder) = controlledRun(.random(switchProbability: 0.5), seed: testSeed, configure: { $0.recordsChoices = true }, lostUpdate)
        let recorded = recorder.recordedChoices
        let first = try #require(recorded.choices.first)
        var edited = recorded.choices
        edited[0].thread = 999
        let list = try #require(ScheduleChoices(edited, through: recorded.through))
        let (outcome, scheduler) = controlledRun(.random(switchProbability: 0.5), seed: testSeed, configure: { $0.choices = list }, lostUpdate)
        #expect(finished(outcome, "edited") != nil)
        #expect(scheduler.statistics.choicesSkipped >= 1, "choice \(first) edited to thread 999: \(scheduler.statistics)")
        #expect(ScheduleChoices([first, first], through: 10) == nil, "a decision twice is refused")
    }

    /// The lost update, found by a random schedule that switches at every
    /// point and recorded, cut down by ddmin over its choices to a few, each
    /// needed, that still lose the update.
    @Test func ddminCutsALostUpdateDownToItsPreemptions() throws {
        var found: (seed: UInt64, choices: ScheduleChoices)? = nil
        for seed in testSeed..<testSeed + 200 where found == nil {
            let (outcome, scheduler) = controlledRun(.random(switchProbability: 1), seed: seed, configure: { $0.recordsChoices = true }, lostUpdate)
            if finished(outcome, "seed \(seed)") == 1 { found = (seed, scheduler.recordedChoices) }
        }
        let (seed, choices) = try #require(found, "random:1 lost no update in 200 seeds from \(testSeed)")
        // Without choices (round robin, no preemption) nothing is lost.
        let none = try #require(ScheduleChoices([], through: choices.through))
        #expect(finished(controlledRun(.random(switchProbability: 1), seed: seed, configure: { $0.choices = none }, lostUpdate).0, "none") == 2)
        let loses: ([Int]) -> Bool = { kept in
            let list = choices.keeping(kept)
            return finished(controlledRun(.random(switchProbability: 1), seed: seed, configure: { $0.choices = list }, lostUpdate).0, "kept \(kept)") == 1
        }
        #expect(loses(Array(choices.choices.indices)), "seed \(seed): the recorded choices replay the lost update")
        let result = DeltaDebugging.minimize(count: choices.choices.count, budget: 500, test: loses)
        let label = "seed \(seed): \(choices.choices.count) choices cut to \(result.kept.count) in \(result.tests) tests"
        // A thread switch at every point: most of the recording is noise.
        #expect(result.isMinimal && result.kept.count < choices.choices.count / 2, "\(label)")
        #expect(loses(result.kept), "the cut-down list still loses the update")
        // 1-minimal: without any one of its choices the update is not lost.
        for dropped in result.kept {
            #expect(!loses(result.kept.filter { $0 != dropped }), "\(label): choice \(dropped) was not needed")
        }
        // The same search again: the same answer (deterministic).
        #expect(DeltaDebugging.minimize(count: choices.choices.count, budget: 500, test: loses) == result)
    }

    /// A choice waits for its site: from its decision number on, it applies
    /// at the first decision where the running thread is at that point. A
    /// thread `t1` takes and drops a lock ten times while `t2` waits to
    /// look at how many rounds `t1` finished; round robin lets `t1` finish
    /// first, so without choices `t2` sees 10. A choice "when `t1` has just
    /// dropped the lock, run `t2`" makes `t2` see the rounds done by then:
    /// at decision 1, none; at any later decision, the rounds finished
    /// before it, and it always applies at `t1`'s unlock, where an
    /// unanchored choice applies at its number (in the middle of a round,
    /// sometimes). A choice whose site does not come before the next
    /// choice's number is skipped.
    @Test func aChoiceWaitsForItsSite() throws {
        @Sendable func rounds(_ domain: SyncDomain) -> Int {
            let lock = SleepingLock("a", domain: domain)
            let done = Unsynchronised(0)
            let seen = Unsynchronised(-1)
            let t1 = domain.spawnThread(named: "t1") {
                for _ in 0..<10 {
                    lock.withLock {}
                    done.value += 1
                }
            }
            let t2 = domain.spawnThread(named: "t2") { seen.value = done.value }
            t1.join()
            t2.join()
            return seen.value
        }
        let strategy = ScheduleStrategy.pct(depth: 1)
        func run(_ choices: [ScheduleChoice]) -> (Int?, [ScheduleChoice], ScheduleStatistics) {
            let list = ScheduleChoices(choices, through: 10_000)!
            let (outcome, scheduler) = controlledRun(strategy, seed: testSeed, configure: { $0.choices = list; $0.recordsChoices = true }, rounds)
            return (finished(outcome, "\(choices)"), scheduler.recordedChoices.choices, scheduler.statistics)
        }
        #expect(run([]).0 == 10, "round robin runs t1 to its end first")
        // t1's unlock of 'a': thread 1, the first monitor made.
        let unlock = ScheduleSite(thread: 1, kind: .unlock, object: 1, stopped: false)
        let (first, applied, _) = run([ScheduleChoice(decision: 1, step: 0, thread: 2, site: unlock)])
        #expect(first == 0 && applied.count == 1 && applied.first?.site == unlock, "\(String(describing: first)) \(applied)")
        var previous = 0
        var unanchoredElsewhere = false
        for decision in UInt64(1)...20 {  // t1 drops the lock for the last time near decision 24
            let (seen, applied, _) = run([ScheduleChoice(decision: decision, step: 0, thread: 2, site: unlock)])
            let at = try #require(applied.first, "decision \(decision): the choice did not apply")
            #expect(at.site == unlock && at.decision >= decision, "decision \(decision): applied at \(at)")
            #expect((seen ?? -1) >= previous, "decision \(decision): t2 saw \(String(describing: seen)), after \(previous) for an earlier one")
            previous = seen ?? previous
            let (_, loose, _) = run([ScheduleChoice(decision: decision, step: 0, thread: 2)])
            if let at = loose.first {
                #expect(at.decision == decision || decision < 3, "decision \(decision): an unanchored choice applied at \(at)")
                if at.site != unlock { unanchoredElsewhere = true }
            }
        }
        #expect(previous > 0 && previous < 10, "later choices let t1 finish some rounds first (\(previous))")
        #expect(unanchoredElsewhere, "an unanchored choice lands where its number falls, not only at unlocks")
        // A site that never comes (t1 at a join) before the next choice: skipped, and the next applies.
        let never = ScheduleChoice(decision: 1, step: 0, thread: 2, site: ScheduleSite(thread: 1, kind: .join, object: 0, stopped: false))
        let (seen, _, statistics) = run([never, ScheduleChoice(decision: 20, step: 0, thread: 2, site: unlock)])
        #expect(statistics.choicesFollowed == 1 && statistics.choicesSkipped == 1 && (seen ?? 0) > 0, "\(statistics)")
    }

    /// A run that would not end is cut at its step limit, as a deadlock is.
    @Test func theStepLimitEndsARunThatWouldNot() {
        let (outcome, _) = controlledRun(.pct(depth: 2), seed: testSeed, configure: { $0.stepLimit = 5_000 }) { domain -> Int in
            let lock = SleepingLock("forever", domain: domain)
            let worker = domain.spawnThread(named: "worker") { while true { lock.withLock {} } }
            worker.join()
            return 0
        }
        guard case .deadlocked(let report) = outcome else {
            Issue.record("the endless run ended: \(outcome)")
            return
        }
        #expect(report.kind == .stepLimit && report.step == 5_000, "\(report)")
        #expect(report.description.contains("step limit"), "\(report)")
    }

    @Test func scheduleFilesReadBackWhatTheyWrite() throws {
        let list = try #require(ScheduleChoices(
            [ScheduleChoice(decision: 3, step: 2, thread: 1), ScheduleChoice(decision: 10, step: 9, thread: 0, site: ScheduleSite(thread: 1, kind: .lock, object: 7, stopped: true))],
            through: 40))
        let file = ScheduleFile(strategy: .pct(depth: 3), choices: list)
        let text = file.text(threadNames: ["main", "worker\nwith a break"], comments: ["from a test"])
        #expect(text.hasPrefix("mmulab-schedule 1\n# from a test\nstrategy pct:3\nthrough 40\n"), "\(text)")
        #expect(text.contains("3 2 1  # -> worker with a break\n"), "\(text)")
        #expect(text.contains("10 9 0 0x8000010000000007  # worker with a break stopped after lock -> main\n"), "\(text)")
        #expect(try ScheduleFile(parsing: text) == file)
        let bad: [(String, String)] = [
            ("", "empty"),
            ("strategy pct:3\n", "expected 'mmulab-schedule 1'"),
            ("mmulab-schedule 2\n", "expected"),
            ("mmulab-schedule 1\nstrategy fifo\nthrough 3\n", "'strategy' takes"),
            ("mmulab-schedule 1\nthrough 3\n", "no 'strategy'"),
            ("mmulab-schedule 1\nstrategy pct\n1 1 1\n", "come before the choices"),
            ("mmulab-schedule 1\nstrategy pct\nthrough 9\n4 3 1\n4 3 2\n", "line 5: decision 4 does not come after decision 4"),
            ("mmulab-schedule 1\nstrategy pct\nthrough 9\n4 30 1\n", "after 'through'"),
            ("mmulab-schedule 1\nstrategy pct\nthrough 9\n4 3\n", "decision, step, thread and an optional site"),
            ("mmulab-schedule 1\nstrategy pct\nthrough 9\n4 3 1 12\n", "a site is 0x"),
            ("mmulab-schedule 1\nstrategy pct\nthrough 9\n0 0 1\n", "numbered from 1"),
            ("mmulab-schedule 1\nstrategy pct\nthrough -1\n", "'through' takes"),
        ]
        for (text, message) in bad {
            #expect(throws: ScheduleFile.ParseError.self, "\(text)") { try ScheduleFile(parsing: text) }
            do {
                _ = try ScheduleFile(parsing: text)
            } catch {
                #expect(error.description.contains(message), "\(text): \(error)")
            }
        }
    }
}

@Suite("Delta debugging")
struct DeltaDebuggingTests {
    /// Two items of a hundred cause the failure: ddmin finds exactly them.
    @Test func findsTheTwoItemsThatMatter() {
        var calls = 0
        let result = DeltaDebugging.minimize(count: 100, budget: 1_000) { kept in
            calls += 1
            return kept.contains(17) && kept.contains(64)
        }
        #expect(result.kept == [17, 64] && result.isMinimal, "\(result)")
        #expect(result.tests == calls && calls < 100, "\(calls) tests")
    }

    /// A failure that needs nothing is found at the first test.
    @Test func anAlwaysFailingTestKeepsNothing() {
        let result = DeltaDebugging.minimize(count: 50, budget: 10) { _ in true }
        #expect(result.kept.isEmpty && result.tests == 1 && result.isMinimal, "\(result)")
    }

    /// Out of budget: what was found so far (still failing), not called minimal.
    @Test func theBudgetBoundsTheTests() {
        var calls = 0
        let result = DeltaDebugging.minimize(count: 1_000, budget: 7) { kept in
            calls += 1
            return kept.contains(3) && kept.contains(500) && kept.contains(999)
        }
        #expect(calls == 7 && result.tests == 7 && !result.isMinimal, "\(result)")
        #expect(result.kept.contains(3) && result.kept.contains(500) && result.kept.contains(999))
    }

    /// Needing every item: the whole set comes back, 1-minimal.
    @Test func needingEveryItemKeepsThemAll() {
        let result = DeltaDebugging.minimize(count: 6, budget: 1_000) { $0.count == 6 }
        #expect(result.kept == Array(0..<6) && result.isMinimal, "\(result)")
    }
}
