import BugDatabase
import Foundation
import Testing

/// The bug database: bugs deduplicated by title across runs and campaigns,
/// a run recorded twice counted once, and a bug "gone" only once a later
/// campaign ran its scenario with the same arguments and did not hit it.
@Suite("bug database")
struct BugDatabaseTests {
    /// A fresh database file in a directory of its own.
    static func database() throws -> BugDatabase {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("bugdb-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        return try BugDatabase(path: directory.appendingPathComponent("bugs.sqlite").path)
    }

    static func campaign(_ id: String, at seconds: Double, arguments: String = "--duration 1s", plugins: String = "") -> CampaignEntry {
        CampaignEntry(
            id: id, engine: "local", startedAt: Date(timeIntervalSince1970: seconds), scenarios: "reclaim-storm", seeds: "1..2",
            arguments: arguments, plugins: plugins, directory: "/tmp/\(id)")
    }

    static func run(_ campaign: String, seed: UInt64, outcome: String = "findings", scenario: String = "reclaim-storm") -> RunEntry {
        RunEntry(
            campaignID: campaign, scenario: scenario, seed: seed, outcome: outcome, seconds: 1,
            replay: "mmulab run \(scenario) --seed \(seed)" + (seed > 9 ? " --duration 1s" : ""))
    }

    static func bug(_ title: String, count: Int = 3) -> BugObservation {
        BugObservation(title: title, invariant: "useAfterFree", pluginInstance: "mirror#0", count: count, firstSeenSeconds: 0.25, evidence: "{\"pfn\": 7}")
    }

    @Test("the same title from two runs of two campaigns is one bug: its runs, campaigns and findings add up")
    func deduplicatesByTitle() throws {
        let db = try Self.database()
        try db.record(Self.campaign("a", at: 100, plugins: "mirror-broken"))
        try db.record(Self.campaign("b", at: 200, plugins: "mirror-broken"))
        try db.record(Self.run("a", seed: 1), bugs: [Self.bug("use after free: x", count: 2), Self.bug("lost write: y")], at: Date(timeIntervalSince1970: 110))
        try db.record(Self.run("b", seed: 12), bugs: [Self.bug("use after free: x", count: 5)], at: Date(timeIntervalSince1970: 210))
        let bugs = try db.bugs()
        #expect(bugs.map(\.title) == ["use after free: x", "lost write: y"], "most recently seen first")
        let uaf = try #require(bugs.first)
        #expect(uaf.runs == 2 && uaf.campaigns == 2 && uaf.findings == 7)
        #expect(uaf.firstSeen == Date(timeIntervalSince1970: 110) && uaf.lastSeen == Date(timeIntervalSince1970: 210))
        #expect(uaf.plugins == ["mirror#0", "mirror-broken"])
        #expect(uaf.shortestReplay == "mmulab run reclaim-storm --seed 1", "the shorter of the two replays")
        #expect(try db.bugs(campaign: "b").map(\.title) == ["use after free: x"])
        let detail = try #require(try db.bug(id: uaf.id))
        #expect(detail.evidence == "{\"pfn\": 7}")
        #expect(detail.hits.map(\.seed).sorted() == [1, 12])
        #expect(try db.bug(id: 999) == nil)
    }

    @Test("a run recorded twice (a campaign collected twice) is counted once, with its newer bugs")
    func recordingARunAgainReplacesIt() throws {
        let db = try Self.database()
        try db.record(Self.campaign("a", at: 100))
        try db.record(Self.run("a", seed: 1), bugs: [Self.bug("use after free: x")])
        try db.record(Self.run("a", seed: 1), bugs: [Self.bug("use after free: x")])
        try db.record(Self.run("a", seed: 2), bugs: [])
        let uaf = try #require(try db.bugs().first)
        #expect(uaf.runs == 1 && uaf.findings == 3, "\(uaf)")
        #expect(try #require(try db.bug(id: uaf.id)).hits.count == 1)
        // Collected while it ran, seed 2 looked crashed; collected again, it is clean: no crash bug is left.
        try db.record(Self.run("a", seed: 3, outcome: "crashed"), bugs: [Self.bug("crash: no result")])
        #expect(try db.bugs().count == 2)
        try db.record(Self.run("a", seed: 3, outcome: "clean"), bugs: [])
        #expect(try db.bugs().map(\.title) == ["use after free: x"])
    }

    @Test("a bug is gone once a later campaign with the same arguments runs its scenario clean; not before, not for other arguments")
    func goneAfterACleanRerun() throws {
        let db = try Self.database()
        try db.record(Self.campaign("before-fix", at: 100))
        try db.record(Self.run("before-fix", seed: 1), bugs: [Self.bug("use after free: x")], at: Date(timeIntervalSince1970: 110))
        #expect(try db.bugs().first?.goneSince == nil)

        // Other arguments (another plugin option) say nothing about it.
        try db.record(Self.campaign("other-options", at: 200, arguments: "--duration 1s --plugin-options bug=sleep"))
        try db.record(Self.run("other-options", seed: 1, outcome: "clean"), bugs: [])
        #expect(try db.bugs().first?.goneSince == nil)

        // Another scenario with the same arguments says nothing either.
        try db.record(Self.campaign("other-scenario", at: 250))
        try db.record(Self.run("other-scenario", seed: 1, outcome: "clean", scenario: "munmap-race"), bugs: [])
        #expect(try db.bugs().first?.goneSince == nil)

        try db.record(Self.campaign("after-fix", at: 300))
        try db.record(Self.run("after-fix", seed: 1, outcome: "clean"), bugs: [])
        #expect(try db.bugs().first?.goneSince == "after-fix")

        // Seen again later: it reproduces again.
        try db.record(Self.campaign("regressed", at: 400))
        try db.record(Self.run("regressed", seed: 2), bugs: [Self.bug("use after free: x")], at: Date(timeIntervalSince1970: 410))
        #expect(try db.bugs().first?.goneSince == nil)
    }

    @Test("reopening a database keeps what it holds; a file that is not one is refused with its path")
    func reopenAndRefuse() throws {
        let db = try Self.database()
        try db.record(Self.campaign("a", at: 100))
        try db.record(Self.run("a", seed: 1), bugs: [Self.bug("lost write: y")])
        let again = try BugDatabase(path: db.path)
        #expect(try again.bugs().map(\.title) == ["lost write: y"])
        #expect(try again.campaigns().map(\.id) == ["a"])

        let junk = db.path + ".junk"
        try Data("this is not SQLite, it is a text file long enough to have a header".utf8).write(to: URL(fileURLWithPath: junk))
        #expect {
            try BugDatabase(path: junk)
        } throws: { error in
            "\(error)".contains(junk)
        }
    }
}
