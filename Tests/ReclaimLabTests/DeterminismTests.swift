import LabSync
import ReclaimLab
import Testing
import TestSupport
import VirtualMemory

/// `--schedule`: the same scenario, seed and strategy give the same run.
@Suite("Deterministic runs")
struct DeterminismTests {
    /// What two runs must share to be the same run: the event trail, the
    /// schedule, every counter, every finding and the step it was noted at.
    struct Fingerprint: Equatable, CustomStringConvertible {
        var trailDigest: UInt64
        var scheduleDigest: UInt64
        var steps: UInt64
        var accesses: [Int]
        var primary: [String]
        var plugins: [String]
        var findings: [String]

        init(_ result: RunResult) {
            trailDigest = result.trailDigest
            scheduleDigest = result.schedule?.scheduleDigest ?? 0
            steps = result.schedule?.steps ?? 0
            accesses = [result.cpuReads, result.cpuWrites, result.deviceReads, result.deviceWrites, result.checkedReads, result.failedAccesses]
            primary = result.machineStatistics.map { "\($0.0)=\($0.1)" }
            plugins = result.pluginStatistics.flatMap { name, stats in stats.map { "\(name).\($0.name)=\($0.value)" } }
            findings = result.findings.map { "\($0.invariant.rawValue) at step \($0.step.map(String.init) ?? "?"): \($0.detail)" }
        }

        var description: String {
            "trail \(String(trailDigest, radix: 16)), schedule \(String(scheduleDigest, radix: 16)) over \(steps) steps, "
                + "accesses \(accesses), \(findings.count) findings"
        }

        /// The first field that differs, for a failure message.
        func difference(from other: Fingerprint) -> String {
            if trailDigest != other.trailDigest { return "trail digests \(String(trailDigest, radix: 16)) vs \(String(other.trailDigest, radix: 16))" }
            if scheduleDigest != other.scheduleDigest || steps != other.steps { return "schedules: \(self) vs \(other)" }
            if accesses != other.accesses { return "accesses \(accesses) vs \(other.accesses)" }
            if primary != other.primary { return "primary counters: \(zip(primary, other.primary).first { $0 != $1 }.map { "\($0) vs \($1)" } ?? "lengths")" }
            if plugins != other.plugins { return "plugin counters: \(zip(plugins, other.plugins).first { $0 != $1 }.map { "\($0) vs \($1)" } ?? "lengths")" }
            if findings != other.findings { return "findings: \(findings.prefix(2)) vs \(other.findings.prefix(2))" }
            return "nothing"
        }
    }

    static func run(
        _ name: String, seed: UInt64, strategy: ScheduleStrategy = .pct(depth: 3), seconds: Double = 0.03,
        inUserSpace: Bool = ControlledScheduler.canHandOverInUserSpace
    ) throws -> RunResult {
        let scenario = try #require(try Catalogue.scenario(named: name))
        var options = RunOptions()
        options.seed = seed
        options.seconds = seconds
        options.schedule = strategy
        options.handsOverInUserSpace = inUserSpace
        return try ScenarioRunner.run(scenario, options: options)
    }

    /// A run whose threads take turns on one kernel thread (the default on
    /// x86-64) is the same run as one whose every thread has its own
    /// (`--kernel-hand-over`), plugins' own threads included: trail,
    /// schedule, counters and findings. reclaim-storm has all three bundled
    /// plugins, fork-cow a finding-free fork storm, thp-storm huge pages.
    @Test(arguments: ["reclaim-storm", "fork-cow", "thp-storm"])
    func bothHandOversRunTheSameScenario(_ name: String) throws {
        try #require(ControlledScheduler.canHandOverInUserSpace, "this machine cannot hand over in user space")
        let user = try Self.run(name, seed: testSeed, inUserSpace: true)
        let kernel = try Self.run(name, seed: testSeed, inUserSpace: false)
        let (a, b) = (Fingerprint(user), Fingerprint(kernel))
        #expect(a == b, "\(name), pct:3, seed \(testSeed): user-space and kernel hand-overs differ in \(a.difference(from: b))")
        #expect(user.operations > 1_000 && (user.schedule?.switches ?? 0) > 100, "\(name): the runs did something")
        #expect(user.schedule?.escapes.isEmpty == true, "\(name): \(user.schedule?.escapes ?? [])")
    }

    /// Three catalogue scenarios, each run twice under pct:3: the same
    /// trail digest, schedule, counters and findings; another seed gives
    /// another trail.
    @Test(arguments: ["munmap-race", "dirty-writeback", "register-race"])
    func aScenarioRunTwiceUnderPCTRunsTheSame(_ name: String) throws {
        let first = try Self.run(name, seed: testSeed)
        let second = try Self.run(name, seed: testSeed)
        let (a, b) = (Fingerprint(first), Fingerprint(second))
        #expect(a == b, "\(name), pct:3, seed \(testSeed): the runs differ in \(a.difference(from: b))")
        #expect(first.operations > 1_000, "\(name), seed \(testSeed): the run did something (\(first.operations) accesses)")
        #expect(first.schedule?.escapes.isEmpty == true, "\(name): \(first.schedule?.escapes ?? [])")
        #expect(first.schedule?.strategy == "pct:3")
        let other = try Self.run(name, seed: testSeed &+ 1)
        #expect(other.trailDigest != first.trailDigest, "\(name): seeds \(testSeed) and \(testSeed &+ 1) gave the same trail")
    }

    /// The random strategy replays too.
    @Test func aRandomScheduleReplays() throws {
        let strategy = ScheduleStrategy.random(switchProbability: 0.2)
        let first = Fingerprint(try Self.run("mprotect-flip", seed: testSeed, strategy: strategy))
        let second = Fingerprint(try Self.run("mprotect-flip", seed: testSeed, strategy: strategy))
        #expect(first == second, "mprotect-flip, \(strategy), seed \(testSeed): \(first.difference(from: second))")
    }

    /// A progress callback does not change the run: `mmulab run` watches
    /// with one, `mmulab replay` and `shrink` without, and a finding after
    /// the first progress sample (250 ms) must still replay. (The snapshot
    /// for the callback took the trail's lock, a scheduling point, only when
    /// someone watched.)
    @Test func aWatchedRunSchedulesAsAnUnwatchedOne() throws {
        let scenario = try #require(try Catalogue.scenario(named: "munmap-race"))
        func run(watched: Bool) throws -> Fingerprint {
            var options = RunOptions()
            options.seed = testSeed
            options.seconds = 0.03
            options.schedule = .pct(depth: 3)
            options.progressInterval = .milliseconds(5)
            if watched { options.progress = { _ in } }
            return Fingerprint(try ScenarioRunner.run(scenario, options: options))
        }
        let (unwatched, watched) = (try run(watched: false), try run(watched: true))
        #expect(unwatched == watched, "munmap-race, pct:3, seed \(testSeed): \(unwatched.difference(from: watched))")
    }

    /// reclaim-storm, seed 65, random:0.1 for 300 ms (as `mmulab run
    /// reclaim-storm --seed 65 --duration 300ms --schedule random:0.1`): a
    /// KVM page the guest used was checked through a frame it had left (a
    /// COW copy had replaced it) while its own frame's check ran; the stale
    /// check took the accessed bit, the page's own check answered "not
    /// young", and the aging oracle reported the correct KVM plugin. Reclaim
    /// now asks only about the pages a frame is mapped at, one check of a
    /// page at a time (YoungCheckTests). Needs the KVM plugin (a release or
    /// debug build of the package has it).
    @Test func reclaimStormSeed65HasNoFalseAgingFinding() throws {
        let scenario = try #require(try Catalogue.scenario(named: "reclaim-storm"))
        var options = RunOptions()
        options.seed = 65
        options.seconds = 0.3
        options.schedule = .random(switchProbability: 0.1)
        let result = try ScenarioRunner.run(scenario, options: options)
        #expect(result.pluginStatistics.contains { $0.0.hasPrefix("kvm") }, "the KVM plugin ran")
        #expect(result.findings.isEmpty, "\(result.findings.prefix(2).map { "\($0.invariant.rawValue): \($0.detail)" })")
    }

    /// A bad access the primary checked says the step of its check
    /// (`accessStep`), not only the later step at which the run noted it
    /// (the run drains the machine's log now and then): the step a replay's
    /// trace shows last is the accessing thread's own taking of the
    /// page-table lock the check runs under, so the steps kept up to it
    /// (what `replay --trail` draws) end at the race itself.
    @Test func aBadAccessIsPlacedAtTheStepOfItsCheck() throws {
        let scenario = try #require(try Catalogue.scenario(named: "reclaim-storm")).adding(plugin: "mirror-broken", options: "bug=stale")
        var options = RunOptions()
        options.seed = testSeed
        options.seconds = 0.1
        options.schedule = .pct(depth: 3)
        func badAccesses(_ result: RunResult) -> [Finding] {
            result.findings.filter { $0.detail.contains("through a translation the primary no longer has") }
        }
        let whole = try ScenarioRunner.run(scenario, options: options)
        let first = try #require(badAccesses(whole).min { ($0.accessStep ?? .max) < ($1.accessStep ?? .max) }, "seed \(testSeed): no bad access found")
        let step = try #require(first.accessStep)
        #expect(step <= first.step ?? 0, "checked before it was noted")
        let actor = try #require(first.actor)
        options.trace = (lastStep: step, steps: 50)
        let traced = try ScenarioRunner.run(scenario, options: options)
        #expect(badAccesses(traced).contains { $0.detail == first.detail && $0.accessStep == step }, "seed \(testSeed): the replay differs")
        let steps = traced.trace.filter { $0.step <= step }
        let last = try #require(steps.last, "seed \(testSeed): nothing traced up to step \(step)")
        #expect(last.step == step && last.thread == actor, "seed \(testSeed): step \(step) is \(last.thread)'s (\(last.text)), not \(actor)'s")
        // The access is checked under the page-table lock: its step is that lock's.
        #expect(last.text.contains("page_table_lock"), "seed \(testSeed): step \(step) is \(last.text)")
    }

    /// Free-running runs say nothing about a schedule (and keep a trail digest).
    @Test func aFreeRunHasNoSchedule() throws {
        let scenario = try #require(try Catalogue.scenario(named: "munmap-race"))
        var options = RunOptions()
        options.seed = testSeed
        options.seconds = 0.05
        let result = try ScenarioRunner.run(scenario, options: options)
        #expect(result.schedule == nil)
        #expect(result.trailDigest != 0)
        #expect(result.findings.allSatisfy { $0.step == nil })
    }
}
