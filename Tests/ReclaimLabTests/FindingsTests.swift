import MMUNotifier
import TestSupport
@testable import ReclaimLab
import Testing
import VirtualMemory

/// The parts that turn findings into bugs: titles, what a page holds, the
/// matching of symptoms to root causes, and the shape of a plugin's message.
@Suite("Findings as bugs")
struct FindingsTests {
    @Test func titlesReadLikeABugTrackersList() {
        #expect(BugKey(invariant: .useAfterFree, kind: "use after free", instance: "gpu#0", path: "device access", event: "vmscan").title
            == "use after free: gpu#0 device access after vmscan")
        #expect(BugKey(invariant: .staleTranslation, kind: "write through a read-only translation", instance: "nic#0", path: "device access").title
            == "stale translation (write through a read-only translation): nic#0 device access")
        #expect(BugKey(invariant: .contextViolation, kind: "sleep", instance: "mirror#0", path: "interval invalidate", event: "oomReap").title
            == "context violation (sleep): mirror#0 interval invalidate during oomReap")
        #expect(BugKey(invariant: .lostWrite, path: "CPU read").title == "lost write: CPU read")
    }

    @Test func aPluginsMessageIsShapedWithoutItsNumbers() {
        #expect(PrimaryChecks.shape(of: "retry of [0x1000, 0x2000) after 12 tries") == "retry of [N, N) after N tries")
        #expect(PrimaryChecks.shape(of: "no numbers") == "no numbers")
    }

    static func mappings() -> [[TrackedMapping]] {
        let machine = Machine(.init(memory: PhysicalMemory.Configuration(frames: 64), swapSlots: 0))
        let space = machine.makeAddressSpace()
        return [[TrackedMapping(
            spaceIndex: 0, mappingIndex: 0, address: 0x1000_0000, pages: 8, duplicates: 0, names: ("app", "heap"), space: space, hot: false)]]
    }

    @Test func whatAPageHoldsIsToldApart() {
        let mappings = Self.mappings()
        let mapping = mappings[0][0]
        #expect(PageContent(mapping.tag(page: 3, version: 7), mappings: mappings) == .tag(.init(page: 3, version: 7, space: 0, mapping: 0)))
        #expect(PageContent([UInt8](repeating: 0, count: 16), mappings: mappings) == .zeros)
        #expect(PageContent(mapping.duplicateContent, mappings: mappings) == .duplicate)
        #expect(PageContent(DeviceActors.shortLivedTag(2, 9, 4), mappings: mappings) == .shortLived(actor: 2, round: 9, page: 4))
        // Random bytes that end in the tag's magic are not a tag: the page, mapping and space it would name do not exist.
        var random: [UInt8] = [0xD0, 0xB1, 0x9E, 0xD0, 1, 2, 3, 4, 0x10, 0x20, 0x30, 0x40, 5, 6, 7, TrackedMapping.magic]
        #expect(PageContent(random, mappings: mappings) == .unrecognised(random))
        #expect(PageContent(random, mappings: mappings).describe(mappings: mappings).hasPrefix("unrecognised data (d0 b1 9e d0"))
        random[15] = 0x77
        #expect(PageContent(random, mappings: mappings).describe(mappings: mappings).hasPrefix("unrecognised data"))
        #expect(PageContent(mapping.tag(page: 3, version: 7), mappings: mappings).describe(mappings: mappings)
            == "the data of page 3 of app/heap (version 7)")
    }

    static let root = BugKey(invariant: .useAfterFree, kind: "use after free", instance: "broken#0", path: "device access", event: "vmscan")
    static let page = PageID(AddressSpaceID(1), 0x1000_3000)
    static let other = PageID(AddressSpaceID(2), 0x2000_5000)

    static func symptom(_ page: PageID, found: PageID? = nil, at nanoseconds: UInt64, reader: Int32? = nil) -> Symptom {
        Symptom(key: BugKey(invariant: .lostWrite, path: "CPU read"), page: page, found: found, nanoseconds: nanoseconds, reader: reader)
    }

    @Test func aSymptomOfTheFlaggedAccessItselfTakesItsCreditWhateverTheTimes() {
        var roots = RootCauses()
        // The violation's time is known only roughly (the thread's latest access of the page): later than the symptom's.
        roots.record(Self.page, Self.root, at: 5_000_000, by: 42)
        #expect(roots.cause(of: Self.symptom(Self.page, at: 1_000_000, reader: 42)) == Self.root)
        // One violation, one symptom: the next symptom of that thread on that page has no credit left, and is too early for the page's root.
        #expect(roots.cause(of: Self.symptom(Self.page, at: 1_000_000, reader: 42)) == nil)
        // Another thread's read of the page after the root: a lost write the stale write caused.
        #expect(roots.cause(of: Self.symptom(Self.page, at: 6_000_000, reader: 7)) == Self.root)
    }

    @Test func aSymptomFindingAnotherPagesDataIsAttachedToThatPagesRootCause() {
        var roots = RootCauses()
        roots.record(Self.other, Self.root, at: 2_000_000, by: 9)
        #expect(roots.cause(of: Self.symptom(Self.page, found: Self.other, at: 9_000_000_000)) == Self.root, "however long after")
        #expect(roots.cause(of: Self.symptom(Self.page, found: Self.other, at: 500_000)) == nil, "not before the root")
        #expect(roots.cause(of: Self.symptom(Self.page, at: 9_000_000_000)) == nil, "nothing flagged on the page itself")
    }

    /// A device access that was on its way while an invalidation ran (its
    /// thread preempted between its translation and its DMA, as a fork's
    /// write-protect did in thp-storm under pct:3): its trail runs to when
    /// the access reached memory, so it shows that invalidation, and says
    /// when the access began.
    @Test func theTrailOfABadAccessRunsToWhenItLandedAndSaysWhenItBegan() {
        let machine = Machine(.init(memory: PhysicalMemory.Configuration(frames: 64), swapSlots: 0))
        let clock = LabClock(domain: machine.sync)
        let trail = EventTrail(clock: clock, domain: machine.sync)
        clock.start()
        let space = AddressSpaceID(1)
        func pause() { machine.sync.sleep(for: .milliseconds(2)) }
        trail.record(.start, space, 0x1000, 0x2000, event: .cowBreak)
        trail.record(.end, space, 0x1000, 0x2000, event: .cowBreak)
        pause()
        let began = clock.nanoseconds
        pause()
        trail.record(.start, space, 0, 0x10_0000, event: .writeProtect)
        trail.record(.end, space, 0, 0x10_0000, event: .writeProtect)
        pause()
        let landed = clock.nanoseconds
        let lines = trail.trail(space: space, address: 0x1000, upTo: landed, access: (.dma(write: true), began, landed))
        #expect(lines.count == 5, "\(lines)")
        #expect(lines[2].hasSuffix("invalidate start writeProtect [0x0, 0x100000)"), "\(lines)")
        #expect(lines.last == "\(clock.text(landed)) device write through the stale translation (the bad access), begun at \(clock.text(began))")
        // Cut where the access began, the trail would miss the write-protect.
        #expect(trail.trail(space: space, address: 0x1000, upTo: began).allSatisfy { !$0.contains("writeProtect") })
    }

    /// A bad access through the shared zero page names it so (its number,
    /// one past the machine's frames, means nothing to a reader), and the
    /// sentence says what was wrong with the translation: a write the
    /// primary still maps read-only is not one "the primary no longer has".
    @Test func theZeroPageIsNamedAndAReadOnlyWriteSaysSo() throws {
        let scenario = try #require(try Catalogue.scenario(named: "munmap-race")).adding(plugin: "mirror-broken", options: "bug=zero-page")
        var options = RunOptions()
        options.seed = testSeed
        options.seconds = 0.01
        options.schedule = .random(switchProbability: 0.1)
        let result = try ScenarioRunner.run(scenario, options: options)
        let write = try #require(result.findings.first { $0.invariant == .writeThroughReadOnly }, "seed \(testSeed): \(result.findings.prefix(2))")
        #expect(write.detail.contains("wrote the zero page (pfn#") && write.detail.contains("through a translation that does not allow a write"),
                "seed \(testSeed): \(write.detail)")
        #expect(!write.detail.contains("no longer has"), "\(write.detail)")
        #expect(write.deviceTranslation?.hasPrefix("the zero page (pfn#") == true, "\(write.deviceTranslation ?? "none")")
    }

    @Test func durationsAreSpelledAsPeopleDo() throws {
        #expect(try DurationText.seconds("10s") == 10 && DurationText.seconds("2m") == 120 && DurationText.seconds("500ms") == 0.5)
        #expect(try DurationText.seconds("1.5") == 1.5 && DurationText.seconds("1h") == 3_600 && DurationText.seconds("1_000ms") == 1)
        for bad in ["-1", "0", "0s", "abc", "", "s", "ms", "10x", "+5"] {
            #expect(throws: DurationText.Problem.self, "\(bad)") { try DurationText.seconds(bad) }
        }
        #expect(throws: DurationText.Problem.self) { try DurationText.seconds("2d") }
        #expect(throws: DurationText.Problem.self) { try DurationText.seconds("25h") }
        #expect(ReplayCommand.secondsText(30) == "30s" && ReplayCommand.secondsText(0.5) == "500ms" && ReplayCommand.secondsText(2.25) == "2.25s")
        for text in ["700ms", "1ms", "999ms", "0.3", "1.1s", "90m"] {
            let seconds = try DurationText.seconds(text)
            #expect(try DurationText.seconds(ReplayCommand.secondsText(seconds)) == seconds, "\(text) reads back exactly")
        }
        #expect(try DurationText.seconds("700ms") == 0.7)
    }
}
