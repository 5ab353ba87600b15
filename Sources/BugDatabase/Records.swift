public import Foundation
public import GRDB

/// One campaign: what was asked and where its results are.
public struct CampaignEntry: Codable, Sendable, Hashable, FetchableRecord, PersistableRecord {
    public static let databaseTableName = "campaign"

    /// The campaign's directory name (unique).
    public var id: String
    /// `local` or `slurm`.
    public var engine: String
    public var startedAt: Date
    /// Nil while it runs (or if it was never collected).
    public var finishedAt: Date?
    /// The scenarios as the user named them, space-separated.
    public var scenarios: String
    /// `A..B`.
    public var seeds: String
    /// The arguments every run got besides its scenario and seed (shell words).
    public var arguments: String
    /// The plugins the campaign added to every run (`--plugin`), space-separated.
    public var plugins: String
    /// Where its results are.
    public var directory: String
    /// The batch job, for the Slurm engine.
    public var jobID: String?
    public var interrupted: Bool

    public init(
        id: String, engine: String, startedAt: Date, finishedAt: Date? = nil, scenarios: String, seeds: String, arguments: String,
        plugins: String = "", directory: String, jobID: String? = nil, interrupted: Bool = false
    ) {
        self.id = id
        self.engine = engine
        self.startedAt = startedAt
        self.finishedAt = finishedAt
        self.scenarios = scenarios
        self.seeds = seeds
        self.arguments = arguments
        self.plugins = plugins
        self.directory = directory
        self.jobID = jobID
        self.interrupted = interrupted
    }
}

/// One run of a campaign and how it ended.
public struct RunEntry: Codable, Sendable, Hashable, FetchableRecord, MutablePersistableRecord {
    public static let databaseTableName = "run"

    public var id: Int64?
    public var campaignID: String
    public var scenario: String
    public var seed: Int64
    /// `clean`, `skip`, `findings`, `crashed`, `hung`, `bad input`.
    public var outcome: String
    public var seconds: Double
    public var findingsTotal: Int?
    /// The command that replays it.
    public var replay: String
    /// The first finding, the crash or the log's last line.
    public var detail: String?

    public init(
        campaignID: String, scenario: String, seed: UInt64, outcome: String, seconds: Double, findingsTotal: Int? = nil, replay: String,
        detail: String? = nil
    ) {
        self.campaignID = campaignID
        self.scenario = scenario
        self.seed = Int64(bitPattern: seed)
        self.outcome = outcome
        self.seconds = seconds
        self.findingsTotal = findingsTotal
        self.replay = replay
        self.detail = detail
    }

    public mutating func didInsert(_ inserted: InsertionSuccess) { id = inserted.rowID }
}

/// One bug, by its title (the run reports' deduplication key, syzbot style),
/// with the evidence of the first time it was seen.
public struct BugEntry: Codable, Sendable, Hashable, FetchableRecord, MutablePersistableRecord {
    public static let databaseTableName = "bug"

    public var id: Int64?
    public var title: String
    public var invariant: String
    public var pluginInstance: String?
    public var firstSeen: Date
    public var lastSeen: Date
    /// The first occurrence's evidence, as the run report gave it (JSON).
    public var evidence: String

    public mutating func didInsert(_ inserted: InsertionSuccess) { id = inserted.rowID }
}

/// A bug seen in a run: how many times, and when first (seconds into the run).
public struct BugHit: Codable, Sendable, Hashable, FetchableRecord, PersistableRecord {
    public static let databaseTableName = "bugHit"

    public var bugID: Int64
    public var runID: Int64
    public var count: Int
    public var firstSeenSeconds: Double?
}

/// What a run report says of one bug.
public struct BugObservation: Sendable, Hashable {
    public var title: String
    public var invariant: String
    public var pluginInstance: String?
    public var count: Int
    public var firstSeenSeconds: Double?
    /// The first occurrence's evidence (JSON text).
    public var evidence: String

    public init(title: String, invariant: String, pluginInstance: String?, count: Int, firstSeenSeconds: Double?, evidence: String) {
        self.title = title
        self.invariant = invariant
        self.pluginInstance = pluginInstance
        self.count = count
        self.firstSeenSeconds = firstSeenSeconds
        self.evidence = evidence
    }
}
