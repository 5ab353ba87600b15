import ArgumentParser
import BugDatabase
import Foundation
import ReclaimLab

#if canImport(Glibc)
import Glibc
#endif

/// `mmulab bugs`: the bugs campaigns found, across campaigns, from the bug
/// database (`bugs list`, the default, and `bugs show ID`).
struct BugsCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "bugs",
        abstract: "List the bugs campaigns found, across campaigns (the bug database), or show one with its evidence.",
        subcommands: [BugsListCommand.self, BugsShowCommand.self],
        defaultSubcommand: BugsListCommand.self
    )
}

/// Where the bug database is.
struct BugDatabaseOption: ParsableArguments {
    @Option(help: ArgumentHelp("The bug database (default: bugs.sqlite in mmulab-campaigns, where `mmulab campaign` keeps it).", valueName: "file"))
    var db: String = "mmulab-campaigns/bugs.sqlite"

    /// The database, which must exist (listing never creates one).
    func open() throws -> BugDatabase {
        guard access(db, F_OK) == 0 else {
            writeToStandardError("mmulab: no bug database at \(db) (`mmulab campaign` makes one in its --output-dir; --db names another)\n")
            throw ExitCode(2)
        }
        do {
            return try BugDatabase(path: db)
        } catch {
            writeToStandardError("mmulab: \(error)\n")
            throw ExitCode(2)
        }
    }
}

struct BugsListCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "list",
        abstract: "List every bug, most recently seen first (the default).",
        discussion: """
            One entry per bug title (a run report's deduplicated bug; a crash or a hang is a \
            bug of its own): when it was first and last seen, how many runs of how many \
            campaigns hit it, the scenarios and plugins, the shortest command that replays it, \
            and whether it still reproduces: a bug is "gone" once a later campaign ran one of \
            its scenarios with the same plugins and arguments and did not hit it.
            """
    )

    @OptionGroup var database: BugDatabaseOption

    @Flag(help: "Only the bugs that still reproduce.")
    var open = false

    @Option(help: "Write the list as JSON to this file (- for standard output).")
    var json: String?

    func run() throws {
        let (jsonDestination, _) = try RunSession.destinations(json: json, report: nil)
        let human: Int32 = jsonDestination?.isStandardOutput == true ? STDERR_FILENO : STDOUT_FILENO
        let db = try database.open()
        var bugs: [BugSummary]
        do {
            bugs = try db.bugs()
        } catch {
            writeToStandardError("mmulab: \(error)\n")
            throw ExitCode(2)
        }
        if open { bugs.removeAll { $0.goneSince != nil } }
        let campaigns = (try? db.campaigns().count) ?? 0
        var text = "\(bugs.count) bug\(bugs.count == 1 ? "" : "s")\(open ? " that still reproduce" : "") from \(campaigns) campaign\(campaigns == 1 ? "" : "s") (\(db.path))\n"
        for bug in bugs { text += "\n" + BugText.summary(bug) }
        writeText(text, to: human)
        if let jsonDestination {
            do {
                try jsonDestination.write(BugText.json(bugs.map(BugText.jsonObject)))
            } catch {
                writeToStandardError("mmulab: \(error)\n")
                throw ExitCode(2)
            }
        }
    }
}

struct BugsShowCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "show",
        abstract: "Show one bug: its summary, the evidence of its first occurrence, and every run that hit it."
    )

    @OptionGroup var database: BugDatabaseOption

    @Argument(help: "The bug's number (as `mmulab bugs` lists it).")
    var id: Int64

    func run() throws {
        let db = try database.open()
        let found: BugDetail?
        do {
            found = try db.bug(id: id)
        } catch {
            writeToStandardError("mmulab: \(error)\n")
            throw ExitCode(2)
        }
        guard let bug = found else {
            writeToStandardError("mmulab: no bug #\(id) in \(db.path) (`mmulab bugs --db \(ReplayCommand.quoted(db.path))` lists them)\n")
            throw ExitCode(2)
        }
        var text = BugText.summary(bug.summary) + "\nevidence (first occurrence):\n"
        text += bug.evidence.split(separator: "\n", omittingEmptySubsequences: false).map { "  " + $0 }.joined(separator: "\n") + "\n"
        text += "\nruns that hit it:\n"
        let rows = [["campaign", "scenario", "seed", "count", "first at", "replay"]]
            + bug.hits.map { hit in
                [hit.campaign, hit.scenario, String(hit.seed), String(hit.count), hit.firstSeenSeconds.map { String(format: "%.3f s", $0) } ?? "-", hit.replay]
            }
        let widths = rows[0].indices.map { column in rows.map { $0[column].count }.max() ?? 0 }
        for row in rows {
            text += "  " + row.indices.map { $0 == row.count - 1 ? row[$0] : row[$0].padded(to: widths[$0]) }.joined(separator: "  ") + "\n"
        }
        writeText(text, to: STDOUT_FILENO)
    }
}

/// How bugs read, in text and JSON.
enum BugText {
    static func summary(_ bug: BugSummary) -> String {
        var lines = ["#\(bug.id)  \(bug.title)"]
        lines.append(
            "    hit by \(bug.runs) run\(bug.runs == 1 ? "" : "s") in \(bug.campaigns) campaign\(bug.campaigns == 1 ? "" : "s") "
                + (["crashed", "hung"].contains(bug.invariant) ? "" : "(\(bug.findings) finding\(bug.findings == 1 ? "" : "s"))") + ", first seen \(timestamp(bug.firstSeen)), last seen \(timestamp(bug.lastSeen))")
        lines.append("    scenarios  \(bug.scenarios.joined(separator: ", "))")
        if !bug.plugins.isEmpty { lines.append("    plugins    \(bug.plugins.joined(separator: ", "))") }
        if !bug.arguments.isEmpty { lines.append("    arguments  \(bug.arguments.joined(separator: "; "))") }
        lines.append("    replay     \(bug.shortestReplay)")
        lines.append("    status     " + (bug.goneSince.map { "gone: campaign \($0) ran its scenarios again and did not hit it" } ?? "reproduces"))
        return lines.joined(separator: "\n") + "\n"
    }

    static func jsonObject(_ bug: BugSummary) -> [String: Any] {
        [
            "id": NSNumber(value: bug.id), "title": bug.title, "invariant": bug.invariant,
            "first_seen": timestamp(bug.firstSeen), "last_seen": timestamp(bug.lastSeen),
            "runs": bug.runs, "campaigns": bug.campaigns, "findings": bug.findings,
            "scenarios": bug.scenarios, "plugins": bug.plugins, "arguments": bug.arguments, "shortest_replay": bug.shortestReplay,
            "gone_since": bug.goneSince ?? NSNull(),
        ]
    }

    static func json(_ objects: [[String: Any]]) throws -> String {
        let data = try JSONSerialization.data(withJSONObject: ["bugs": objects], options: [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes])
        return String(decoding: data, as: UTF8.self) + "\n"
    }

    /// `2026-11-30 14:10:02 UTC`.
    static func timestamp(_ date: Date) -> String {
        var now = time_t(date.timeIntervalSince1970)
        var parts = tm()
        gmtime_r(&now, &parts)
        return String(
            format: "%04d-%02d-%02d %02d:%02d:%02d UTC", Int(parts.tm_year) + 1900, Int(parts.tm_mon) + 1, Int(parts.tm_mday), Int(parts.tm_hour),
            Int(parts.tm_min), Int(parts.tm_sec))
    }
}
