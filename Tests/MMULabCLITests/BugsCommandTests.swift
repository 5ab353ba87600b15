import Foundation
import Testing

/// `mmulab bugs`: the bugs of several campaigns from one database; a bug
/// that a campaign after the fix no longer hits is marked gone; `bugs show`
/// prints the evidence; a missing database or bug is bad input.
@Suite("mmulab bugs")
struct BugsCommandTests {
    @Test("a broken plugin's bugs, then the same scenario after the fix: the bugs are gone; show prints the evidence and the runs")
    func goneAfterTheFix() throws {
        let sandbox = try Sandbox()
        // The scenario keeps its name; what changes is the plugin (the fix).
        let scenario = try sandbox.write("device.yaml", SlurmCampaignTests.scenario("device", plugin: "mirror-broken", options: "bug=stale"))
        let broken = try sandbox.mmulab(["campaign", "device.yaml", "--seeds", "1..2", "--jobs", "2"])
        #expect(broken.status == 1, "\(broken.transcript)")
        #expect(broken.stdout.contains("new: mmulab bugs --db "), "\(broken.transcript)")

        let before = try sandbox.mmulab(["bugs", "--json", "before.json"])
        #expect(before.status == 0, "\(before.transcript)")
        let found = try #require(try jsonObject(at: sandbox.path("before.json"))["bugs"] as? [[String: Any]])
        #expect(!found.isEmpty && found.allSatisfy { $0["gone_since"] is NSNull }, "\(before.stdout)")
        #expect(before.stdout.contains("status     reproduces"), "\(before.stdout)")

        try SlurmCampaignTests.scenario("device", plugin: "mirror-c").write(toFile: scenario, atomically: true, encoding: .utf8)
        let fixed = try sandbox.mmulab(["campaign", "device.yaml", "--seeds", "1..2", "--jobs", "2"])
        #expect(fixed.status == 0, "\(fixed.transcript)")
        #expect(fixed.stdout.contains("bugs      none in this campaign"), "\(fixed.transcript)")

        let after = try sandbox.mmulab(["bugs", "--json", "after.json"])
        #expect(after.stdout.contains("from 2 campaigns"), "\(after.transcript)")
        let list = try #require(try jsonObject(at: sandbox.path("after.json"))["bugs"] as? [[String: Any]])
        #expect(list.count == found.count)
        #expect(list.allSatisfy { !($0["gone_since"] is NSNull) }, "every bug is gone after the fix: \(after.stdout)")
        #expect(after.stdout.contains("status     gone: campaign "), "\(after.stdout)")
        let open = try sandbox.mmulab(["bugs", "--open"])
        #expect(open.stdout.hasPrefix("0 bugs that still reproduce from 2 campaigns"), "\(open.transcript)")

        let id = try #require(list.first?["id"] as? Int)
        let shown = try sandbox.mmulab(["bugs", "show", String(id)])
        #expect(shown.status == 0, "\(shown.transcript)")
        #expect(shown.stdout.contains("evidence (first occurrence):"), "\(shown.transcript)")
        #expect(shown.stdout.contains("(device dev#0)"), "the evidence names the device: \(shown.transcript)")
        #expect(shown.stdout.contains("mmulab run device.yaml --seed "), "\(shown.transcript)")
    }

    @Test("no database, or no such bug: exit 2, saying which")
    func badInput() throws {
        let sandbox = try Sandbox()
        expectBadInput(try sandbox.mmulab(["bugs"]), mentions: ["no bug database at mmulab-campaigns/bugs.sqlite"])
        expectBadInput(try sandbox.mmulab(["bugs", "--db", "elsewhere.sqlite"]), mentions: ["elsewhere.sqlite"])
        #expect(!FileManager.default.fileExists(atPath: sandbox.path("elsewhere.sqlite")), "listing never creates a database")
        let clean = try sandbox.mmulab(["campaign", "munmap-race", "--seeds", "1", "--duration", "0.3"])
        #expect(clean.status == 0, "\(clean.transcript)")
        expectBadInput(try sandbox.mmulab(["bugs", "show", "7"]), mentions: ["no bug #7"])
        expectBadInput(try sandbox.mmulab(["bugs", "show", "seven"]), mentions: ["seven"])
    }
}
