import LabSync
import ReclaimLab
import Testing
import TestSupport
import VirtualMemory

/// Each way to break the contract makes its matching built-in scenario
/// fail, and the finding names the invariant that breaks. (Every scenario
/// runs clean unbroken: CatalogueTests.) A timing window may be missed on
/// a loaded machine, so each case gets up to three seeded runs; the first
/// that finds anything must name one of the expected invariants, and only
/// invariants that breakage can cause.
@Suite("Breakages are caught and named")
struct BreakageTests {
    struct Case: Sendable, CustomTestStringConvertible {
        var name: String
        var scenario: String
        var faults: MemoryFaultInjection = []
        /// A plugin added with `Scenario.adding(plugin:options:)`.
        var plugin: (name: String, options: String)? = nil
        var seconds: Double
        /// The run must name at least one of these.
        var expected: Set<Finding.Invariant>
        /// What else the same breakage may cause.
        var allowed: Set<Finding.Invariant> = []
        /// Whether a finding must name a page of a tracked mapping (not for
        /// breakage that shows on exit-release's short-lived spaces).
        var namesPages = true
        var testDescription: String { name }
    }

    static let cases: [Case] = [
        Case(
            name: "skip-range-end on munmap-race", scenario: "munmap-race", faults: .skipRangeEnd, seconds: 1,
            expected: [.unpairedStartEnd]),
        Case(
            name: "skip-young-check on young-aging", scenario: "young-aging", faults: .skipYoungCheck, seconds: 2,
            expected: [.hotPageEvicted]),
        Case(
            name: "drop-secondary-dirty on dirty-writeback", scenario: "dirty-writeback", faults: .dropSecondaryDirty, seconds: 2,
            expected: [.lostWrite]),
        Case(
            name: "free-before-invalidate on reclaim-storm", scenario: "reclaim-storm", faults: .freeBeforeInvalidate, seconds: 2,
            expected: [.staleTranslation, .useAfterFree], allowed: [.crossSpaceLeak, .lostWrite, .writeThroughReadOnly]),
        Case(
            name: "mirror-broken bug=stale on reclaim-storm", scenario: "reclaim-storm", plugin: ("mirror-broken", "bug=stale"), seconds: 2,
            expected: [.staleTranslation, .useAfterFree], allowed: [.crossSpaceLeak, .lostWrite, .writeThroughReadOnly]),
        Case(
            name: "mirror-broken bug=sleep on oom-reaper", scenario: "oom-reaper", plugin: ("mirror-broken", "bug=sleep"), seconds: 1,
            expected: [.contextViolation]),
        // The strict rule: zapping at range end is too late, the pages may
        // be freed inside the bracket.
        Case(
            name: "mirror-broken bug=zap-at-end on munmap-race", scenario: "munmap-race", plugin: ("mirror-broken", "bug=zap-at-end"),
            seconds: 1, expected: [.staleTranslation, .useAfterFree], allowed: [.crossSpaceLeak, .lostWrite]),
        Case(
            name: "mirror-broken bug=ignore-wp on mprotect-flip", scenario: "mprotect-flip", plugin: ("mirror-broken", "bug=ignore-wp"),
            seconds: 1, expected: [.writeThroughReadOnly], allowed: [.lostWrite, .staleTranslation, .useAfterFree, .crossSpaceLeak]),
        Case(
            name: "mirror-broken bug=no-dirty on reclaim-storm", scenario: "reclaim-storm", plugin: ("mirror-broken", "bug=no-dirty"),
            seconds: 2, expected: [.lostWrite]),
        Case(
            name: "mirror-broken bug=not-young on young-aging", scenario: "young-aging", plugin: ("mirror-broken", "bug=not-young"),
            seconds: 2, expected: [.youngLost], allowed: [.hotPageEvicted]),
        Case(
            name: "mirror-broken bug=ignore-release on exit-release", scenario: "exit-release", plugin: ("mirror-broken", "bug=ignore-release"),
            seconds: 1, expected: [.useAfterFree], allowed: [.staleTranslation, .crossSpaceLeak], namesPages: false),
        Case(
            name: "mirror-broken bug=zero-page on munmap-race", scenario: "munmap-race", plugin: ("mirror-broken", "bug=zero-page"),
            seconds: 1, expected: [.writeThroughReadOnly], allowed: [.lostWrite]),
        // A write after MADV_FREE through a writable but clean translation,
        // never reported dirty: reclaim discards the page with it.
        Case(
            name: "mirror-broken bug=lazy-free on lazy-free-churn", scenario: "lazy-free-churn", plugin: ("mirror-broken", "bug=lazy-free"),
            seconds: 2, expected: [.lostWrite]),
        // Translations kept through invalidations on pages the device holds a
        // reference on (get_page): not freed, but no longer the process's
        // pages there; the reference excuses nothing inside the device's
        // acknowledged bracket.
        Case(
            name: "mirror-broken bug=stale-ref on munmap-race", scenario: "munmap-race", plugin: ("mirror-broken", "bug=stale-ref"),
            seconds: 1, expected: [.staleTranslation], allowed: [.lostWrite, .writeThroughReadOnly, .crossSpaceLeak]),
        // Dirty bits reported after the invalidation callback returned, on
        // frames reclaim may have freed meanwhile (set_dirty's generation check).
        Case(
            name: "mirror-broken bug=late-dirty on dirty-writeback", scenario: "dirty-writeback", plugin: ("mirror-broken", "bug=late-dirty"),
            seconds: 1, expected: [.useAfterFree], allowed: [.lostWrite]),
        // Writable translations kept through a userfaultfd write-protect.
        Case(
            name: "mirror-broken bug=ignore-wp on uffd-snapshot", scenario: "uffd-snapshot", plugin: ("mirror-broken", "bug=ignore-wp"),
            seconds: 1, expected: [.writeThroughReadOnly], allowed: [.lostWrite, .staleTranslation, .useAfterFree, .crossSpaceLeak]),
        // Translations of the old address kept through mremap.
        Case(
            name: "mirror-broken bug=ignore-mremap on mremap-move", scenario: "mremap-move", plugin: ("mirror-broken", "bug=ignore-mremap"),
            seconds: 1, expected: [.staleTranslation], allowed: [.useAfterFree, .lostWrite, .crossSpaceLeak]),
        // A 2 MiB device entry kept through a split, zapped only by ranges
        // that cover its first page.
        Case(
            name: "mirror-broken bug=huge-split on thp-storm", scenario: "thp-storm", plugin: ("mirror-broken", "bug=huge-split"),
            seconds: 3, expected: [.staleTranslation, .useAfterFree], allowed: [.writeThroughReadOnly, .lostWrite, .crossSpaceLeak]),
        // An exclusive entry kept after the CPU took the page back.
        Case(
            name: "mirror-broken bug=keep-exclusive on device-atomics", scenario: "device-atomics", plugin: ("mirror-broken", "bug=keep-exclusive"),
            seconds: 1, expected: [.staleTranslation], allowed: [.useAfterFree, .lostWrite, .crossSpaceLeak]),
        // Translations looked up before a long-term pin that moved the
        // pages out of movable memory.
        Case(
            name: "mirror-broken bug=longterm-pfn on longterm-pins", scenario: "longterm-pins", plugin: ("mirror-broken", "bug=longterm-pfn"),
            seconds: 1, expected: [.staleTranslation, .useAfterFree], allowed: [.crossSpaceLeak, .lostWrite]),
        // The kernel-style driver (Examples/KernelStyleMirror, through the
        // Linux shim) with the classic bugs of a Linux driver; its two fault
        // races are in KernelStyleMirrorTests, on a scenario made for them.
        // The OOM kill comes 500 ms into the run; 2 s leave a loaded machine
        // time to reap (a whole-suite run once missed it in three 1 s runs).
        Case(
            name: "kernel-mirror bug=mutex-in-nonblockable on oom-reaper", scenario: "oom-reaper",
            plugin: ("kernel-mirror", "bug=mutex-in-nonblockable"), seconds: 2, expected: [.contextViolation]),
        Case(
            name: "kernel-mirror bug=keep-write-tag on mprotect-flip", scenario: "mprotect-flip", plugin: ("kernel-mirror", "bug=keep-write-tag"),
            seconds: 1, expected: [.writeThroughReadOnly],
            allowed: [.protNoneAccess, .lostWrite, .staleTranslation, .useAfterFree, .crossSpaceLeak]),
    ]

    @Test(arguments: cases)
    func theMatchingScenarioFailsNamingTheInvariant(_ breakage: Case) throws {
        var scenario = try #require(try Catalogue.scenario(named: breakage.scenario))
        if let plugin = breakage.plugin { scenario = try scenario.adding(plugin: plugin.name, options: plugin.options) }
        var options = RunOptions()
        options.faults = breakage.faults
        options.seconds = breakage.seconds
        var found: RunResult? = nil
        for attempt in 0..<3 where found == nil {
            options.seed = testSeed &+ UInt64(attempt)
            let result = try ScenarioRunner.run(scenario, options: options)
            if !result.findings.isEmpty { found = result }
        }
        let result = try #require(found, "\(breakage.name), seeds \(testSeed)...+2: not caught in three runs")
        let named = Set(result.findings.map(\.invariant))
        #expect(!named.isDisjoint(with: breakage.expected), "\(breakage.name), seed \(result.seed): named \(named)")
        #expect(named.isSubset(of: breakage.allowed.union(breakage.expected)), "\(breakage.name), seed \(result.seed): named \(named)")
        // Findings about a page say which page; the primary's and the
        // readers' say how it got there (a racy window may leave an
        // individual trail empty, when the page's last events are older
        // than the ring, so one trail among them is enough).
        // Every occurrence kept: each bug's first and its further examples.
        let paged = result.bugs.flatMap { [$0.first] + $0.examples + $0.symptomExamples }.filter { $0.place != nil }
        #expect(!paged.isEmpty || !breakage.namesPages || breakage.expected == [.unpairedStartEnd] || breakage.expected == [.contextViolation],
                "\(breakage.name): no finding names its page")
        // (A page a device keeps hot may never have been invalidated: a young
        // check's finding about it has no events to show.)
        if paged.contains(where: { $0.invariant != .lostWrite && $0.invariant != .youngLost }) {
            #expect(paged.contains { !$0.trail.isEmpty }, "\(breakage.name): no finding has an event trail")
        }
    }

    /// The same breakages under a controlled scheduler: each is found on
    /// the first seed it is given (no retries), and the run replayed from
    /// that seed finds the same first finding at the same step.
    struct ScheduledCase: Sendable, CustomTestStringConvertible {
        var breakage: Case
        var strategy: ScheduleStrategy
        var testDescription: String { "\(breakage.name) under \(strategy)" }
    }

    static let scheduledCases: [ScheduledCase] = [
        ScheduledCase(
            breakage: Case(name: "skip-range-end on munmap-race", scenario: "munmap-race", faults: .skipRangeEnd, seconds: 0.05,
                expected: [.unpairedStartEnd]),
            strategy: .pct(depth: 3)),
        ScheduledCase(
            breakage: Case(name: "skip-young-check on young-aging", scenario: "young-aging", faults: .skipYoungCheck, seconds: 0.1,
                expected: [.hotPageEvicted]),
            strategy: .pct(depth: 3)),
        ScheduledCase(
            breakage: Case(name: "drop-secondary-dirty on dirty-writeback", scenario: "dirty-writeback", faults: .dropSecondaryDirty,
                seconds: 0.1, expected: [.lostWrite]),
            strategy: .pct(depth: 3)),
        // Devices use the mappings munmap-race unmaps under them, so pages
        // freed before the devices are told are met at once; reclaim-storm
        // frees cold pages, which a device seldom touches in the window.
        ScheduledCase(
            breakage: Case(name: "free-before-invalidate on munmap-race", scenario: "munmap-race", faults: .freeBeforeInvalidate,
                seconds: 0.1, expected: [.staleTranslation, .useAfterFree], allowed: [.crossSpaceLeak, .lostWrite]),
            strategy: .pct(depth: 3)),
        ScheduledCase(
            breakage: Case(name: "mirror-broken bug=stale on reclaim-storm", scenario: "reclaim-storm", plugin: ("mirror-broken", "bug=stale"),
                seconds: 0.1, expected: [.staleTranslation, .useAfterFree], allowed: [.crossSpaceLeak, .lostWrite]),
            strategy: .random(switchProbability: 0.1)),
        // The OOM kill comes 500 ms (virtual) into the run.
        ScheduledCase(
            breakage: Case(name: "mirror-broken bug=sleep on oom-reaper", scenario: "oom-reaper", plugin: ("mirror-broken", "bug=sleep"),
                seconds: 0.7, expected: [.contextViolation]),
            strategy: .pct(depth: 3)),
        // The other BrokenMirror bugs, each in the scenario of its
        // free-running case. Each length leaves at least half again the
        // virtual time at which the default seed's run notes its first
        // finding (in brackets: time, step; `mmulab run` with the same
        // scenario, seed, strategy and length), and the runs of seeds
        // 1...12 found their bug within it too, at the latest time given.
        // The device zaps only at range end, after the frame went back:
        // found after the churn's first munmaps or a copy-on-write break
        // [5 ms, step 47,167; seeds 1...12 by 10 ms].
        ScheduledCase(
            breakage: Case(name: "mirror-broken bug=zap-at-end on munmap-race", scenario: "munmap-race",
                plugin: ("mirror-broken", "bug=zap-at-end"), seconds: 0.02,
                expected: [.staleTranslation, .useAfterFree], allowed: [.crossSpaceLeak, .lostWrite]),
            strategy: .random(switchProbability: 0.1)),
        // The device's first read faults of untouched private memory get
        // the zero page, and its next write goes through it [1 ms, step
        // 23,152; seeds 1...12 by 4 ms].
        ScheduledCase(
            breakage: Case(name: "mirror-broken bug=zero-page on munmap-race", scenario: "munmap-race",
                plugin: ("mirror-broken", "bug=zero-page"), seconds: 0.01,
                expected: [.writeThroughReadOnly], allowed: [.lostWrite]),
            strategy: .random(switchProbability: 0.1)),
        // mprotect flips every 2.5 ms; a write after a flip to read-only
        // through a translation faulted writable before it [7 ms, step
        // 77,492; seeds 1...12 by 9 ms].
        ScheduledCase(
            breakage: Case(name: "mirror-broken bug=ignore-wp on mprotect-flip", scenario: "mprotect-flip",
                plugin: ("mirror-broken", "bug=ignore-wp"), seconds: 0.02,
                expected: [.writeThroughReadOnly], allowed: [.lostWrite, .staleTranslation, .useAfterFree, .crossSpaceLeak]),
            strategy: .random(switchProbability: 0.1)),
        // The longest: a write is lost only on a page that reclaim evicted,
        // that came back clean (swapped in) and mapped writable, that the
        // device wrote, and that reclaim evicted again: two passes of
        // reclaim over memory that first fills about 15 ms in [32 ms, step
        // 320,267; seeds 1...12 by 74 ms].
        ScheduledCase(
            breakage: Case(name: "mirror-broken bug=no-dirty on reclaim-storm", scenario: "reclaim-storm",
                plugin: ("mirror-broken", "bug=no-dirty"), seconds: 0.08, expected: [.lostWrite]),
            strategy: .pct(depth: 3)),
        // The first young check of a page the guests keep hot comes once the
        // streaming CPU has filled memory [13 ms, step 127,263; seeds 1...12
        // by 13 ms].
        ScheduledCase(
            breakage: Case(name: "mirror-broken bug=not-young on young-aging", scenario: "young-aging",
                plugin: ("mirror-broken", "bug=not-young"), seconds: 0.02,
                expected: [.youngLost], allowed: [.hotPageEvicted]),
            strategy: .random(switchProbability: 0.1)),
        // The first short-lived space to exit leaves the device its view
        // [under 1 ms, seeds 1...12 by 1 ms; the device's read after the
        // exit is noted at step 5,152, the primary's check of the same read,
        // the first finding, at step 15,083 as the actors stop].
        ScheduledCase(
            breakage: Case(name: "mirror-broken bug=ignore-release on exit-release", scenario: "exit-release",
                plugin: ("mirror-broken", "bug=ignore-release"), seconds: 0.005,
                expected: [.useAfterFree], allowed: [.staleTranslation, .crossSpaceLeak], namesPages: false),
            strategy: .random(switchProbability: 0.1)),
    ]

    @Test(arguments: scheduledCases)
    func underAScheduleTheFirstSeedFindsItAndReplaysIt(_ scheduled: ScheduledCase) throws {
        let breakage = scheduled.breakage
        var scenario = try #require(try Catalogue.scenario(named: breakage.scenario))
        if let plugin = breakage.plugin { scenario = try scenario.adding(plugin: plugin.name, options: plugin.options) }
        var options = RunOptions()
        options.faults = breakage.faults
        options.seconds = breakage.seconds
        options.seed = testSeed
        options.schedule = scheduled.strategy
        let result = try ScenarioRunner.run(scenario, options: options)
        let label = "\(scheduled.testDescription), seed \(testSeed)"
        #expect(result.schedule?.escapes.isEmpty == true, "\(label): \(result.schedule?.escapes ?? [])")
        let first = try #require(result.findings.first, "\(label): not caught")
        let named = Set(result.findings.map(\.invariant))
        #expect(!named.isDisjoint(with: breakage.expected), "\(label): named \(named)")
        #expect(named.isSubset(of: breakage.allowed.union(breakage.expected)), "\(label): named \(named)")
        #expect(first.step != nil, "\(label): a deterministic finding says its step")
        let replay = try ScenarioRunner.run(scenario, options: options)
        let again = try #require(replay.findings.first, "\(label): the replay found nothing")
        #expect(again.invariant == first.invariant && again.step == first.step && again.detail == first.detail,
                "\(label): the replay's first finding differs:\n  \(first) [step \(first.step ?? 0)]\n  \(again) [step \(again.step ?? 0)]")
        #expect(replay.findingsTotal == result.findingsTotal && replay.trailDigest == result.trailDigest, "\(label): the replay differs")
    }

    /// A device whose view survives its address space's exit (the broken
    /// mirror keeps its translations through the exit invalidation) is
    /// caught by exit-release: the device still reaches the exited
    /// space's memory.
    @Test func aDeviceViewThatOutlivesExitIsCaught() throws {
        let scenario = try ScenarioReader.read(yaml: """
            name: exit-release-broken
            length: { seconds: 1 }
            machine: { frames: 512, swap-slots: 1024 }
            spaces: [ { name: app, mappings: [ { name: heap, pages: 64 } ] } ]
            plugins: [ { plugin: mirror-broken, name: broken, options: "bug=stale" } ]
            workloads: [ { name: cpu, actor: cpu, space: app, mapping: heap } ]
            pressure:
              exit-release: [ { plugin: broken, rate: 200, pages: 8 } ]
            """, file: "exit-release-broken.yaml")
        var options = RunOptions()
        options.seed = testSeed
        let result = try ScenarioRunner.run(scenario, options: options)
        #expect(result.findings.contains { $0.invariant == .useAfterFree && $0.detail.contains("after its address space exited") },
                "seed \(testSeed): \(result.findings.prefix(3))")
    }
}
