import Foundation
import ReclaimLab

#if canImport(Glibc)
import Glibc
#endif

/// Where a campaign keeps everything, so nothing of it is lost and a
/// campaign run by a batch cluster can be collected later (`mmulab
/// campaign collect DIR`):
///
///     DIR/plan.json            what was asked (CampaignPlan)
///     DIR/runs.tsv             one line per run: index, seed, timeout (seconds, as coreutils' timeout reads them), scenario
///     DIR/results/I.json       run I's report (`mmulab run --json`)
///     DIR/results/I.status     run I's end, for the Slurm engine: "exit S START END" or "timeout ..."
///     DIR/logs/I.log           run I's standard output and error
///     DIR/logs/task-T.log      Slurm array task T's own output (its script's errors)
///     DIR/job.sh               the Slurm job array script
///
/// A campaign directory lives in an output directory (`--output-dir`,
/// default `mmulab-campaigns`), which also holds the bug database that the
/// campaigns of that output directory share (`bugs.sqlite`).
struct CampaignDirectory {
    let path: String

    /// Why a directory could not be made or read, in one line.
    struct Failure: Error, CustomStringConvertible {
        let description: String
    }

    var planPath: String { path + "/plan.json" }
    var runsPath: String { path + "/runs.tsv" }
    var jobScriptPath: String { path + "/job.sh" }
    func resultPath(_ index: Int) -> String { "\(path)/results/\(index).json" }
    func statusPath(_ index: Int) -> String { "\(path)/results/\(index).status" }
    func logPath(_ index: Int) -> String { "\(path)/logs/\(index).log" }

    /// Makes a new campaign directory in `outputDirectory` (created if
    /// missing), named by the time and a random suffix.
    static func create(in outputDirectory: String) throws(Failure) -> CampaignDirectory {
        try makeDirectory(outputDirectory)
        var now = time(nil)
        var parts = tm()
        gmtime_r(&now, &parts)
        let stamp = String(
            format: "%04d%02d%02d-%02d%02d%02d", Int(parts.tm_year) + 1900, Int(parts.tm_mon) + 1, Int(parts.tm_mday), Int(parts.tm_hour),
            Int(parts.tm_min), Int(parts.tm_sec))
        for _ in 0..<16 {
            let name = "\(stamp)-\(String(UInt16.random(in: 0...UInt16.max), radix: 16))"
            let path = "\(outputDirectory)/\(name)"
            if mkdir(path, 0o755) == 0 {
                let directory = CampaignDirectory(path: path)
                try makeDirectory(path + "/results")
                try makeDirectory(path + "/logs")
                return directory
            }
            guard errno == EEXIST else { throw Failure(description: "cannot make \(path): \(String(cString: strerror(errno)))") }
        }
        throw Failure(description: "cannot find a free campaign name in \(outputDirectory)")
    }

    /// The campaign directory at `path` (it must hold a plan).
    static func open(_ path: String) throws(Failure) -> CampaignDirectory {
        var info = stat()
        guard stat(path + "/plan.json", &info) == 0 else { throw Failure(description: "\(path): not a campaign directory (no plan.json)") }
        return CampaignDirectory(path: path)
    }

    /// The campaign's name: the directory's last component.
    var name: String { String(path.split(separator: "/").last ?? Substring(path)) }

    private static func makeDirectory(_ path: String) throws(Failure) {
        var info = stat()
        if stat(path, &info) == 0 {
            guard info.st_mode & S_IFMT == S_IFDIR else { throw Failure(description: "\(path) is not a directory") }
            return
        }
        guard mkdir(path, 0o755) == 0 || errno == EEXIST else {
            throw Failure(description: "cannot make \(path): \(String(cString: strerror(errno)))")
        }
    }

    /// Writes `text` to `path` whole (a temporary file renamed into place).
    func write(_ text: String, to path: String) throws(Failure) {
        do {
            try text.write(toFile: path + ".partial", atomically: false, encoding: .utf8)
        } catch {
            throw Failure(description: "cannot write \(path): \(String(cString: strerror(errno)))")
        }
        guard rename(path + ".partial", path) == 0 else { throw Failure(description: "cannot write \(path): \(String(cString: strerror(errno)))") }
    }
}

/// What a campaign asked for, written to its directory before anything
/// runs, so the runs can be done elsewhere (a cluster) and collected later.
struct CampaignPlan: Codable {
    var engine: String
    var scenarios: [String]
    var firstSeed: UInt64
    var lastSeed: UInt64
    var jobs: Int
    var duration: Double?
    var pluginDirectory: String?
    var plugins: [String]
    var pluginOptions: String
    /// Seconds each scenario's run may take before it counts as hung.
    var timeouts: [String: Double]
    /// The mmulab that runs the scenarios (a path every node can reach, for Slurm).
    var executable: String
    /// The bug database the campaign records into.
    var database: String
    var createdAt: Date
    /// The directory the campaign was started in: relative scenario and
    /// plugin paths are relative to it (a Slurm task starts there too).
    var workingDirectory: String
    /// `--schedule` for every run (nil: free-running).
    var schedule: String?
    /// `--kernel-hand-over` for every run (nil, as in plans written before it: no).
    var kernelHandOver: Bool? = nil
    /// Runs each Slurm array task does, one after the other.
    var runsPerTask: Int = 1
    /// The Slurm job, once submitted.
    var jobID: String?

    var seeds: ClosedRange<UInt64> { firstSeed...lastSeed }

    /// Every run, in order: scenario by scenario, seed by seed.
    var runs: [CampaignRun] { scenarios.flatMap { name in seeds.map { CampaignRun(scenario: name, seed: $0) } } }

    /// What every run gets besides `--seed`, `--json` and its scenario.
    var runArguments: [String] {
        var words: [String] = []
        if let duration { words += ["--duration", ReplayCommand.secondsText(duration)] }
        if let pluginDirectory { words += ["--plugin-directory", pluginDirectory] }
        for plugin in plugins { words += ["--plugin", plugin] }
        if !pluginOptions.isEmpty { words += ["--plugin-options", pluginOptions] }
        if let schedule { words += ["--schedule", schedule] }
        if kernelHandOver == true { words += ["--kernel-hand-over"] }
        return words
    }

    func save(in directory: CampaignDirectory) throws(CampaignDirectory.Failure) {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
        encoder.dateEncodingStrategy = .iso8601
        guard let data = try? encoder.encode(self) else { throw CampaignDirectory.Failure(description: "cannot encode the campaign's plan") }
        try directory.write(String(decoding: data, as: UTF8.self) + "\n", to: directory.planPath)
        let lines = runs.enumerated().map {
            "\($0.offset)\t\($0.element.seed)\t\(String(format: "%.3f", timeouts[$0.element.scenario] ?? 300))\t\($0.element.scenario)"
        }
        try directory.write(lines.joined(separator: "\n") + "\n", to: directory.runsPath)
    }

    static func load(from directory: CampaignDirectory) throws(CampaignDirectory.Failure) -> CampaignPlan {
        let decoder = JSONDecoder()
        decoder.dateDecodingStrategy = .iso8601
        guard let data = FileManager.default.contents(atPath: directory.planPath), let plan = try? decoder.decode(CampaignPlan.self, from: data)
        else { throw CampaignDirectory.Failure(description: "\(directory.planPath): not a campaign plan mmulab can read") }
        return plan
    }
}
