public import Foundation
import GRDB

/// A bug as `mmulab bugs` lists it.
public struct BugSummary: Sendable, Hashable {
    public var id: Int64
    public var title: String
    public var invariant: String
    public var firstSeen: Date
    public var lastSeen: Date
    /// Runs and campaigns it was seen in, and findings in all.
    public var runs: Int
    public var campaigns: Int
    public var findings: Int
    public var scenarios: [String]
    /// The plugin instance it names, and the plugins its campaigns added
    /// to every run (`--plugin`).
    public var plugins: [String]
    /// The arguments its runs got besides scenario and seed, one entry per
    /// distinct set (shell words).
    public var arguments: [String]
    /// The shortest command that replays a run that had it.
    public var shortestReplay: String
    /// Nil while it reproduces; else the campaign that ran one of its
    /// scenarios with the same arguments after it was last seen and did
    /// not find it (the bug looks fixed).
    public var goneSince: String?
}

/// A bug with its evidence and every run that had it.
public struct BugDetail: Sendable {
    public var summary: BugSummary
    /// The first occurrence's evidence, as the run report gave it (JSON).
    public var evidence: String
    public var hits: [(campaign: String, scenario: String, seed: UInt64, count: Int, firstSeenSeconds: Double?, replay: String)]
}

extension BugDatabase {
    /// Every bug, most recently seen first.
    public func bugs() throws(Failure) -> [BugSummary] {
        try read { db in
            let bugs = try BugEntry.order(Column("lastSeen").desc, Column("id")).fetchAll(db)
            let campaigns = try CampaignEntry.fetchAll(db)
            return try bugs.map { try Self.summary(of: $0, campaigns: campaigns, db) }
        }
    }

    /// The bugs the runs of campaign `id` hit, most recently seen first.
    public func bugs(campaign id: String) throws(Failure) -> [BugSummary] {
        try read { db in
            let bugs = try BugEntry.fetchAll(
                db,
                sql: """
                    SELECT DISTINCT bug.* FROM bug JOIN bugHit ON bugHit.bugID = bug.id JOIN run ON run.id = bugHit.runID
                    WHERE run.campaignID = ? ORDER BY bug.lastSeen DESC, bug.id
                    """, arguments: [id])
            let campaigns = try CampaignEntry.fetchAll(db)
            return try bugs.map { try Self.summary(of: $0, campaigns: campaigns, db) }
        }
    }

    /// One bug, with its evidence and every run that had it.
    public func bug(id: Int64) throws(Failure) -> BugDetail? {
        try read { db in
            guard let bug = try BugEntry.fetchOne(db, key: id) else { return nil }
            let campaigns = try CampaignEntry.fetchAll(db)
            let rows = try Row.fetchAll(
                db,
                sql: """
                    SELECT run.campaignID, run.scenario, run.seed, run.replay, bugHit.count, bugHit.firstSeenSeconds
                    FROM bugHit JOIN run ON run.id = bugHit.runID WHERE bugHit.bugID = ? ORDER BY run.id
                    """, arguments: [id])
            let hits = rows.map { row in
                (campaign: row["campaignID"] as String, scenario: row["scenario"] as String,
                 seed: UInt64(bitPattern: row["seed"] as Int64), count: row["count"] as Int,
                 firstSeenSeconds: row["firstSeenSeconds"] as Double?, replay: row["replay"] as String)
            }
            return BugDetail(summary: try Self.summary(of: bug, campaigns: campaigns, db), evidence: bug.evidence, hits: hits)
        }
    }

    private static func summary(of bug: BugEntry, campaigns: [CampaignEntry], _ db: Database) throws -> BugSummary {
        let id = bug.id!
        let hits = try Row.fetchAll(
            db,
            sql: """
                SELECT run.campaignID, run.scenario, run.replay, bugHit.count
                FROM bugHit JOIN run ON run.id = bugHit.runID WHERE bugHit.bugID = ?
                """, arguments: [id])
        let hitCampaigns = Set(hits.map { $0["campaignID"] as String })
        let scenarios = Array(Set(hits.map { $0["scenario"] as String })).sorted()
        let replays = hits.map { $0["replay"] as String }
        let byID = Dictionary(uniqueKeysWithValues: campaigns.map { ($0.id, $0) })
        let arguments = Set(hitCampaigns.compactMap { byID[$0]?.arguments })
        var plugins = bug.pluginInstance.map { [$0] } ?? []
        for campaign in hitCampaigns.compactMap({ byID[$0] }) {
            for name in campaign.plugins.split(separator: " ").map(String.init) where !plugins.contains(name) { plugins.append(name) }
        }
        // Gone: a campaign that started after the last hit ran one of its
        // scenarios with the same arguments, and none of its runs had it.
        let lastHitCampaign = hitCampaigns.compactMap { byID[$0] }.max { $0.startedAt < $1.startedAt }
        var goneSince: String? = nil
        if let lastHitCampaign {
            let later = campaigns.filter { $0.startedAt > lastHitCampaign.startedAt && arguments.contains($0.arguments) }
            for campaign in later.sorted(by: { $0.startedAt > $1.startedAt }) {
                let ran = try Int.fetchOne(
                    db, sql: "SELECT COUNT(*) FROM run WHERE campaignID = ? AND scenario IN (\(scenarios.map { _ in "?" }.joined(separator: ",")))",
                    arguments: StatementArguments([campaign.id] + scenarios)) ?? 0
                if ran > 0 {
                    goneSince = campaign.id
                    break
                }
            }
        }
        return BugSummary(
            id: id, title: bug.title, invariant: bug.invariant, firstSeen: bug.firstSeen, lastSeen: bug.lastSeen, runs: hits.count,
            campaigns: hitCampaigns.count, findings: hits.reduce(0) { $0 + ($1["count"] as Int) }, scenarios: scenarios, plugins: plugins,
            arguments: arguments.filter { !$0.isEmpty }.sorted(),
            shortestReplay: replays.min { $0.count < $1.count || ($0.count == $1.count && $0 < $1) } ?? "", goneSince: goneSince)
    }
}
