import Foundation
import ReclaimLab
import LabSync

#if canImport(Glibc)
import Glibc
#endif

/// A campaign run by Slurm: one job array, one array task per run, each
/// task running `mmulab run` under coreutils' `timeout` and leaving its
/// report and its end (`results/I.status`) in the campaign directory, which
/// must be on a filesystem every node shares (and so must the mmulab
/// executable and the plugins).
///
/// Outcomes are the local engine's: the run's exit status says clean (0),
/// findings (1) or bad input (2); a signal is a crash; the campaign's
/// timeout (or Slurm's own time limit, TIMEOUT) is a hang; a task that left
/// no status is what Slurm says it was (FAILED, OUT_OF_MEMORY,
/// NODE_FAIL), read with `sacct` where the cluster keeps accounting and
/// with `scontrol` otherwise.
struct SlurmEngine {
    let plan: CampaignPlan
    let directory: CampaignDirectory
    /// `--partition`, `--account` and every `--sbatch-arg`, as sbatch options.
    var batchOptions: [String] = []

    /// Why Slurm could not take or give back the campaign, in one line.
    struct Failure: Error, CustomStringConvertible {
        let description: String
    }

    // MARK: - The job

    /// Most array tasks one campaign asks for: Slurm's default
    /// MaxArraySize (1001) allows indices 0...1000, and many clusters keep
    /// it. Larger campaigns put several runs in each task.
    static let maximumTasks = 1000

    /// Runs per array task when `--runs-per-task` is not given: one, unless
    /// that would make more than `maximumTasks` tasks.
    static func defaultRunsPerTask(runs: Int) -> Int { max(1, (runs + maximumTasks - 1) / maximumTasks) }

    /// The array tasks the campaign needs.
    var taskCount: Int { (plan.runs.count + plan.runsPerTask - 1) / plan.runsPerTask }

    /// The array task that does run `index`.
    func task(of index: Int) -> Int { index / plan.runsPerTask }

    /// The job array script (written to `job.sh`): task T does runs
    /// T x runsPerTask ..< (T + 1) x runsPerTask, one after the other.
    func jobScript() -> String {
        let runs = plan.runs.count
        let perTask = plan.runsPerTask
        let longest = plan.timeouts.values.max() ?? 300
        // Slurm's limit is in whole minutes and is only a backstop: each
        // run's own `timeout` (with 10 s for a clean stop) comes first.
        let minutes = Int(((Double(perTask) * (longest + 10) + 30) / 60).rounded(.up))
        var lines = [
            "#!/bin/bash",
            "# mmulab campaign \(directory.name): \(perTask == 1 ? "one array task per run" : "\(perTask) runs per array task") "
                + "(see plan.json and runs.tsv). Written by mmulab.",
            "#SBATCH --job-name=mmulab-\(directory.name)",
            "#SBATCH --array=0-\(taskCount - 1)%\(plan.jobs)",
            "#SBATCH --time=\(minutes)",
            "#SBATCH --ntasks=1",
            "#SBATCH --output=\(directory.path)/logs/task-%a.log",
            "#SBATCH --chdir=\(plan.workingDirectory)",
        ]
        lines += batchOptions.map { "#SBATCH \($0)" }
        lines += [
            "set -u",
            "dir=\(ReplayCommand.quoted(directory.path))",
            "first=$((SLURM_ARRAY_TASK_ID * \(perTask)))",
            "last=$((first + \(perTask - 1)))",
            "[ \"$last\" -lt \(runs) ] || last=\(runs - 1)",
            "for i in $(seq \"$first\" \"$last\"); do",
            "    line=$(sed -n \"$((i + 1))p\" \"$dir/runs.tsv\")",
            "    seed=$(printf '%s' \"$line\" | cut -f2)",
            "    limit=$(printf '%s' \"$line\" | cut -f3)",
            "    scenario=$(printf '%s' \"$line\" | cut -f4-)",
            "    start=$(date +%s.%N)",
            "    timeout --kill-after=10 \"$limit\" \(ReplayCommand.quoted(plan.executable)) run --seed \"$seed\" --json \"$dir/results/$i.json\" "
                + plan.runArguments.map(ReplayCommand.quoted).joined(separator: " ") + " -- \"$scenario\" > \"$dir/logs/$i.log\" 2>&1",
            "    status=$?",
            "    end=$(date +%s.%N)",
            "    printf 'exit %s %s %s\\n' \"$status\" \"$start\" \"$end\" > \"$dir/results/$i.status.partial\" && mv \"$dir/results/$i.status.partial\" \"$dir/results/$i.status\"",
            "done",
        ]
        return lines.joined(separator: "\n") + "\n"
    }

    /// Writes the script and submits it; returns the job id.
    func submit() throws(Failure) -> String {
        do {
            try directory.write(jobScript(), to: directory.jobScriptPath)
        } catch {
            throw Failure(description: error.description)
        }
        chmod(directory.jobScriptPath, 0o755)
        guard let result = Subprocess.run(["sbatch", "--parsable", directory.jobScriptPath]) else {
            throw Failure(description: "cannot run sbatch: is Slurm installed (Debian: slurm-client) and on PATH?")
        }
        guard result.succeeded, let id = result.output.split(separator: "\n").first.map({ String($0.split(separator: ";")[0]) }),
            !id.isEmpty
        else {
            throw Failure(description: "sbatch refused the job: " + (result.errors.split(separator: "\n").first.map(String.init) ?? "exit \(result.status)"))
        }
        return id
    }

    // MARK: - Following it

    /// Whether the job still has tasks queued or running.
    func isActive(_ job: String) -> Bool? {
        guard let result = Subprocess.run(["squeue", "-h", "-j", job, "-o", "%i"]), result.succeeded else {
            return nil  // squeue forgets finished jobs; an error here is "not active" once results exist
        }
        return !result.output.split(separator: "\n").isEmpty
    }

    /// Waits until the job has no task queued or running (or a stop
    /// signal), calling `progress(done)` with the runs that left a status.
    /// Returns false when stopped by a signal.
    func follow(_ job: String, progress: (Int) -> Void) -> Bool {
        let scheduler = FreeRunningScheduler()
        let started = ContinuousClock.now
        var quiet = 0
        while true {
            if StopSignals.received != nil { return false }
            progress(finishedRuns)
            let active = isActive(job)
            if active == false || (active == nil && finishedRuns == plan.runs.count) {
                quiet += 1
                if quiet >= 2 { return true }  // twice in a row: not a passing hiccup of slurmctld
            } else {
                quiet = 0
            }
            // Every second at first, then less often (down to every 5 s):
            // squeue asks slurmctld, which a large cluster shares.
            let waited = (ContinuousClock.now - started).seconds
            scheduler.sleep(for: .milliseconds(Int64(1000 * min(5, 1 + waited / 30))))
        }
    }

    /// Cancels the job's tasks still queued or running (`scancel`).
    func cancel(_ job: String) -> Bool {
        Subprocess.run(["scancel", job])?.succeeded == true
    }

    /// How many runs have left their status.
    var finishedRuns: Int {
        (0..<plan.runs.count).filter { access(directory.statusPath($0), F_OK) == 0 }.count
    }

    // MARK: - Collecting

    /// Every run's record (nil for one still queued or running, or
    /// cancelled before it ended), from the
    /// status files and, for tasks that left none, from Slurm.
    func records(job: String?) -> [RunRecord?] {
        var states: [Int: String]? = nil
        var active: Bool? = nil
        return plan.runs.enumerated().map { index, run in
            if let record = directory.record(of: run, index: index) { return record }
            if states == nil {
                states = job.map(taskStates) ?? [:]
                active = job.flatMap(isActive) ?? false
            }
            let excerpt = RunLog.excerpt(of: directory.logPath(index), crashed: true)
            switch states?[task(of: index)] {
            case nil where active == true:
                return nil  // a task of a job still queued that Slurm has not split out yet
            case nil:
                return RunRecord(run: run, outcome: .notStarted(reason: "no result, and Slurm no longer knows the task"), seconds: 0, logExcerpt: excerpt)
            case "PENDING", "RUNNING", "CONFIGURING", "COMPLETING", "REQUEUED", "RESIZING", "SUSPENDED":
                return nil
            case "CANCELLED":
                return nil  // cancelled before it ended (Ctrl-C, scancel): not run, not a crash
            case "TIMEOUT":
                return RunRecord(run: run, outcome: .hung(afterSeconds: plan.timeouts[run.scenario] ?? 300), seconds: 0, logExcerpt: excerpt)
            case "OUT_OF_MEMORY":
                return RunRecord(run: run, outcome: .notStarted(reason: "Slurm: the task ran out of memory (OUT_OF_MEMORY)"), seconds: 0, logExcerpt: excerpt)
            case let other?:
                return RunRecord(run: run, outcome: .notStarted(reason: "Slurm: the task ended \(other) without a result"), seconds: 0, logExcerpt: excerpt)
            }
        }
    }

    /// Slurm's state of each array task, by index: from `sacct` where the
    /// cluster keeps accounting, else from `scontrol` (which remembers
    /// finished jobs for a few minutes).
    private func taskStates(_ job: String) -> [Int: String] {
        var states: [Int: String] = [:]
        if let result = Subprocess.run(["sacct", "-j", job, "-n", "-P", "-X", "-o", "JobID,State"]), result.succeeded {
            for line in result.output.split(separator: "\n") {
                let fields = line.split(separator: "|")
                guard fields.count >= 2, let underscore = fields[0].lastIndex(of: "_"),
                    let index = Int(fields[0][fields[0].index(after: underscore)...])
                else { continue }
                states[index] = String(fields[1].split(separator: " ")[0])
            }
            if !states.isEmpty { return states }
        }
        if let result = Subprocess.run(["scontrol", "show", "job", "-o", job]), result.succeeded {
            for line in result.output.split(separator: "\n") {
                var indices: [Int] = []
                var state: String? = nil
                for field in line.split(separator: " ") {
                    if field.hasPrefix("ArrayTaskId=") { indices = Self.taskIndices(field.dropFirst("ArrayTaskId=".count)) }
                    if field.hasPrefix("JobState=") { state = String(field.dropFirst("JobState=".count)) }
                }
                if let state { for index in indices { states[index] = state } }
            }
        }
        return states
    }

    /// The task indices of an `ArrayTaskId` (`3`, or `0-7%2`, `1,4-6` for
    /// the tasks of a job array not yet started).
    static func taskIndices(_ text: Substring) -> [Int] {
        let list = text.split(separator: "%").first ?? text
        var indices: [Int] = []
        for part in list.split(separator: ",") {
            let bounds = part.split(separator: "-").compactMap { Int($0) }
            if bounds.count == 1 { indices.append(bounds[0]) }
            if bounds.count == 2, bounds[0] <= bounds[1], bounds[1] - bounds[0] < 100_000 { indices += Array(bounds[0]...bounds[1]) }
        }
        return indices
    }
}
