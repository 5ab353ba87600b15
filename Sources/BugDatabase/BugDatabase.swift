public import Foundation
import GRDB

/// The bug database of the campaigns (an SQLite file): every campaign, its
/// runs, and the deduplicated bugs they found, with where and when each was
/// seen, so bugs can be listed across campaigns and a re-run after a fix
/// shows which no longer reproduce.
///
/// Guarantees: the schema is created or migrated when the file is opened
/// (GRDB's migrator, versioned); every write is one transaction (a run and
/// its bugs go in together or not at all); a run already recorded (same
/// campaign, scenario and seed) is replaced, so collecting a campaign twice
/// counts nothing twice.
public final class BugDatabase: Sendable {
    /// Why the database could not be used, in one line.
    public struct Failure: Error, CustomStringConvertible, Sendable {
        public let description: String
    }

    let queue: DatabaseQueue
    public let path: String

    /// Opens (creating if needed) the database at `path`.
    public init(path: String) throws(Failure) {
        self.path = path
        do {
            var configuration = Configuration()
            configuration.busyMode = .timeout(10)  // two campaigns finishing together wait for each other
            queue = try DatabaseQueue(path: path, configuration: configuration)
            try Self.migrator.migrate(queue)
        } catch {
            throw Failure(description: "bug database \(path): \(Self.text(of: error))")
        }
    }

    static var migrator: DatabaseMigrator {
        var migrator = DatabaseMigrator()
        migrator.registerMigration("v1") { db in
            try db.create(table: "campaign") { t in
                t.primaryKey("id", .text)
                t.column("engine", .text).notNull()
                t.column("startedAt", .datetime).notNull()
                t.column("finishedAt", .datetime)
                t.column("scenarios", .text).notNull()
                t.column("seeds", .text).notNull()
                t.column("arguments", .text).notNull()
                t.column("plugins", .text).notNull()
                t.column("directory", .text).notNull()
                t.column("jobID", .text)
                t.column("interrupted", .boolean).notNull()
            }
            try db.create(table: "run") { t in
                t.autoIncrementedPrimaryKey("id")
                t.column("campaignID", .text).notNull().indexed().references("campaign", onDelete: .cascade)
                t.column("scenario", .text).notNull()
                t.column("seed", .integer).notNull()
                t.column("outcome", .text).notNull()
                t.column("seconds", .double).notNull()
                t.column("findingsTotal", .integer)
                t.column("replay", .text).notNull()
                t.column("detail", .text)
                t.uniqueKey(["campaignID", "scenario", "seed"], onConflict: .replace)
            }
            try db.create(table: "bug") { t in
                t.autoIncrementedPrimaryKey("id")
                t.column("title", .text).notNull().unique()
                t.column("invariant", .text).notNull()
                t.column("pluginInstance", .text)
                t.column("firstSeen", .datetime).notNull()
                t.column("lastSeen", .datetime).notNull()
                t.column("evidence", .text).notNull()
            }
            try db.create(table: "bugHit") { t in
                t.column("bugID", .integer).notNull().references("bug", onDelete: .cascade)
                t.column("runID", .integer).notNull().indexed().references("run", onDelete: .cascade)
                t.column("count", .integer).notNull()
                t.column("firstSeenSeconds", .double)
                t.primaryKey(["bugID", "runID"])
            }
        }
        return migrator
    }

    /// Records a campaign (or updates it: its end, its job).
    public func record(_ campaign: CampaignEntry) throws(Failure) {
        try write { db in try campaign.save(db) }
    }

    /// Records a run and the bugs its report names, in one transaction.
    /// `at` is when the run ended (the bugs' first and last seen).
    public func record(_ run: RunEntry, bugs: [BugObservation], at date: Date = Date()) throws(Failure) {
        try write { db in
            var run = run
            try run.insert(db)  // replaces an earlier record of the same run, and its hits
            guard let runID = run.id else { return }
            for observation in bugs {
                var bug: BugEntry
                if let existing = try BugEntry.filter(Column("title") == observation.title).fetchOne(db) {
                    bug = existing
                    bug.firstSeen = min(bug.firstSeen, date)
                    bug.lastSeen = max(bug.lastSeen, date)
                    try bug.update(db)
                } else {
                    bug = BugEntry(
                        id: nil, title: observation.title, invariant: observation.invariant, pluginInstance: observation.pluginInstance,
                        firstSeen: date, lastSeen: date, evidence: observation.evidence)
                    try bug.insert(db)
                }
                try BugHit(bugID: bug.id!, runID: runID, count: observation.count, firstSeenSeconds: observation.firstSeenSeconds).insert(db)
            }
            // A run recorded again (collected once more) may no longer
            // have a bug it had: a bug no run has is no bug.
            try db.execute(sql: "DELETE FROM bug WHERE id NOT IN (SELECT bugID FROM bugHit)")
        }
    }

    /// Every campaign, oldest first.
    public func campaigns() throws(Failure) -> [CampaignEntry] {
        try read { db in try CampaignEntry.order(Column("startedAt")).fetchAll(db) }
    }

    private func write(_ body: (Database) throws -> Void) throws(Failure) {
        do {
            try queue.write(body)
        } catch {
            throw Failure(description: "bug database \(path): \(Self.text(of: error))")
        }
    }

    func read<T>(_ body: (Database) throws -> T) throws(Failure) -> T {
        do {
            return try queue.read(body)
        } catch {
            throw Failure(description: "bug database \(path): \(Self.text(of: error))")
        }
    }

    /// An error in one line (SQLite's message, not an error domain).
    static func text(of error: any Error) -> String {
        if let error = error as? DatabaseError { return error.message ?? "SQLite error \(error.resultCode.rawValue)" }
        return "\(error)"
    }
}
