@testable import ReclaimLab
import Testing
import TestSupport
import VirtualMemory

/// A tracked mapping of a fresh address space of a small machine.
private func trackedMapping(space index: Int = 0, mapping: Int = 0, address: UInt64, pages: Int) -> TrackedMapping {
    let machine = Machine(.init(memory: .init(frames: 64), swapSlots: 0))
    return TrackedMapping(
        spaceIndex: index, mappingIndex: mapping, address: address, pages: pages, duplicates: 0, names: ("a", "m"),
        space: machine.makeAddressSpace(), hot: false)
}

/// The oracle's own rules, one at a time.
@Suite("The oracle")
struct OracleTests {
    /// A writer's publish that loses the race with munmap churn's reset
    /// must not claim a version in the new memory (it would make the next
    /// read of the fresh zero page look like a lost write).
    @Test func aPublishAfterAResetIsDropped() {
        let mapping = trackedMapping(address: 0x1000, pages: 4)
        let (word, last) = mapping.version(of: 2, in: 0)
        #expect(last == 0)
        mapping.publish(1, of: 2, in: 0, replacing: word)
        #expect(mapping.version(of: 2, in: 0).version == 1)
        // A writer reads the version, churn replaces the memory, then the writer publishes.
        let (stale, _) = mapping.version(of: 2, in: 0)
        mapping.reset(to: 2)
        mapping.publish(2, of: 2, in: 0, replacing: stale)
        #expect(mapping.version(of: 2, in: 2).version == 0, "the late publish landed in the new epoch")
        #expect(mapping.version(of: 2, in: 0).version == 0, "a reader of the old epoch sees nothing completed")
    }

    @Test func tagsDecodeToWhatTheyName() {
        let mapping = trackedMapping(space: 3, mapping: 5, address: 0, pages: 1)
        #expect(TrackedMapping.decode(mapping.tag(page: 77, version: 9)) == .init(page: 77, version: 9, space: 3, mapping: 5))
        #expect(TrackedMapping.decode([UInt8](repeating: 0, count: 16)) == nil, "zeros are no tag")
    }

    /// An actor that shows no progress for longer than the watchdog allows
    /// is reported stuck, by name. (Here a workload that sleeps a second
    /// between accesses against a 0.1 s watchdog.)
    @Test func theWatchdogNamesAnActorThatStopsMoving() throws {
        let scenario = try ScenarioReader.read(yaml: """
            name: slow
            length: { seconds: 1 }
            spaces: [ { name: a, mappings: [ { name: m, pages: 8 } ] } ]
            workloads:
              - { name: sleeper, actor: cpu, space: a, mapping: m, rate: 1 }
              - { name: busy, actor: cpu, space: a, mapping: m, writes: 0 }
            pressure: { background-reclaim: false }
            """, file: "slow.yaml")
        var options = RunOptions()
        options.seed = testSeed
        // The sleeper waits a second between accesses; 0.3 s without a beat
        // finds it, while the busy actor would have to go unscheduled that
        // long (0.1 s did happen to it on a machine loaded 8 times over).
        options.watchdogSeconds = 0.3
        let result = try ScenarioRunner.run(scenario, options: options)
        #expect(result.findings.map(\.invariant) == [.stuck], "\(result.findings)")
        #expect(result.findings.first?.detail.hasPrefix("sleeper-0 made no progress") == true)
    }

    /// A device may use its translation until its own callback of an
    /// invalidation, which may come after the invalidation began: a "not
    /// young" answer while the invalidation is still in progress is right
    /// (the callback dropped the translation and its accessed bit), and
    /// not judged; once the invalidation has ended, a use followed by "not
    /// young" is a lost accessed bit again. (thp-storm, free-running on a
    /// loaded machine, caught kvm#0 in the first case: an mprotect still
    /// in progress 40 ms after it began.)
    @Test func aNotYoungAnswerDuringAnInvalidationIsNotJudged() {
        let machine = Machine(.init(memory: .init(frames: 64), swapSlots: 0))
        let clock = LabClock(domain: machine.sync)
        let findings = BugTracker(enabled: Set(Finding.Invariant.allCases), clock: clock, domain: machine.sync)
        let trail = EventTrail(clock: clock, domain: machine.sync)
        let mapping = TrackedMapping(
            spaceIndex: 0, mappingIndex: 0, address: 0x10_0000, pages: 4, duplicates: 0, names: ("vm", "guest"),
            space: machine.makeAddressSpace(), hot: false)
        let check = AgingCheck(instance: "kvm#0", mappings: [mapping], clock: machine.sync, findings: findings, trail: trail)
        let space = mapping.space.id
        let page: UInt64 = 0x10_1000
        func pause() { machine.sync.sleep(for: .microseconds(50)) }
        func use() {
            pause()
            check.deviceUsed(mapping: 0, page: 1, start: check.now)
            pause()
        }

        check.invalidationBegan(space: space, start: 0x10_0000, end: 0x10_4000)
        use()  // before the device's own start callback
        check.answered(space: space, start: page, end: page + 4096, askedAt: machine.sync.now(), young: false)
        #expect(findings.count(of: [.youngLost]) == 0, "a not-young answer during the invalidation was judged")

        check.invalidationEnded(space: space, start: 0x10_0000, end: 0x10_4000)
        use()
        check.answered(space: space, start: page, end: page + 4096, askedAt: machine.sync.now(), young: false)
        #expect(findings.count(of: [.youngLost]) == 1, "a use after the invalidation ended, then not young: a lost accessed bit")
    }

    /// Only the checks a scenario turns on are reported.
    @Test func findingsOfChecksThatAreOffAreNotReported() throws {
        let scenario = try ScenarioReader.read(yaml: """
            name: slow
            length: { seconds: 0.3 }
            spaces: [ { name: a, mappings: [ { name: m, pages: 8 } ] } ]
            workloads: [ { name: sleeper, actor: cpu, space: a, mapping: m, rate: 1 } ]
            pressure: { background-reclaim: false }
            checks: [lost-write]
            """, file: "slow.yaml")
        var options = RunOptions()
        options.watchdogSeconds = 0.1
        let result = try ScenarioRunner.run(scenario, options: options)
        #expect(result.findings.isEmpty && result.findingsTotal == 0, "the watchdog is off in this scenario: \(result.findings)")
    }
}
