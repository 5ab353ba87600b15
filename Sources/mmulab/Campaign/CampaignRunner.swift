import Foundation
import LabSync
import PluginHost
import Synchronization

#if canImport(Glibc)
import Glibc
#endif

/// One run of a campaign: a scenario (as the user named it) and a seed.
struct CampaignRun: Sendable {
    let scenario: String
    let seed: UInt64
}

/// How one run ended.
enum RunOutcome: Sendable {
    case clean
    /// Exit 0, but the run checked no read (its JSON's verdict is `skip`):
    /// it broke nothing and proves nothing, so it is not counted clean.
    case skipped
    /// Exit 1; the count and first finding come from the run's JSON (nil when unreadable).
    case findings(total: Int?, first: String?)
    /// Exit 2: the run refused its input (a plugin that does not load, say).
    case badInput
    /// Killed by a signal it did not get from us: a crash (of the host, or
    /// of a plugin on a thread the host could not tell was the plugin's).
    case crashed(signal: Int32)
    /// A plugin crashed the run and its oops was printed (exit status 4);
    /// the signal, as the oops names it, when it could be read.
    case pluginOops(signal: String?)
    /// An exit status `mmulab run` never gives (counted as crashed).
    case exited(status: Int32)
    /// Still running at its timeout, so killed with its process group.
    case hung(afterSeconds: Double)
    /// The process could not be started (counted as crashed).
    case notStarted(reason: String)

    var isClean: Bool { if case .clean = self { return true } else { return false } }
    var isSkipped: Bool { if case .skipped = self { return true } else { return false } }

    /// One word for tables, JSON and the bug database: clean, skipped, findings,
    /// bad input, crashed (a signal, a plugin oops, an unknown exit status,
    /// or never started), hung.
    var kind: String {
        switch self {
        case .clean: "clean"
        case .skipped: "skipped"
        case .findings: "findings"
        case .badInput: "bad input"
        case .crashed, .pluginOops, .exited, .notStarted: "crashed"
        case .hung: "hung"
        }
    }
    var isCrash: Bool {
        switch self {
        case .crashed, .pluginOops: return true
        default: return false
        }
    }
}

/// A finished run: its outcome, wall time and the end of its output.
struct RunRecord: Sendable {
    let run: CampaignRun
    let outcome: RunOutcome
    let seconds: Double
    /// What the run printed (stdout and stderr) that tells how it ended
    /// (`RunLog.excerpt`); empty for a clean run.
    let logExcerpt: [String]
}

/// Runs a campaign's runs as child processes of this executable, at most
/// `jobs` at a time, in order. Guarantees: every child started is reaped
/// before `execute` returns; a child past its timeout is SIGKILLed with its
/// process group and recorded as hung; one run's failure never stops the
/// others; on SIGINT, SIGTERM or SIGHUP (after `StopSignals.install`) every running
/// child is killed and reaped and `execute` returns the runs finished so far.
struct CampaignRunner {
    let executable: String
    let environment: [String]
    let runs: [CampaignRun]
    let jobs: Int
    /// Passed to every `mmulab run` with the seed (`--duration`, `--plugin-directory`).
    let extraArguments: [String]
    /// Seconds a run of the given scenario may take before it counts as hung.
    let timeout: @Sendable (String) -> Double
    /// Where the runs' logs and JSON reports go (kept: nothing of a run is lost).
    let directory: CampaignDirectory
    /// Reads a run's JSON report after exit 1: findings_total and the first finding.
    let readFindings: @Sendable (String) -> (total: Int, first: String?)?

    /// Sleeps between polls of the children (through LabSync, as every sleep outside it).
    private let scheduler = FreeRunningScheduler()

    private struct Running {
        let index: Int
        let child: ChildProcess
        let started: ContinuousClock.Instant
        let deadline: ContinuousClock.Instant
    }

    /// Every run's record, by its index in `runs` (nil for the runs a stop
    /// signal kept from finishing), calling `progress(done, failed)` as
    /// runs end.
    func execute(progress: (Int, Int) -> Void) -> [RunRecord?] {
        var records = [RunRecord?](repeating: nil, count: runs.count)
        var running: [Running] = []
        var next = 0
        var done = 0
        var failed = 0
        func finish(_ index: Int, _ outcome: RunOutcome, since start: ContinuousClock.Instant) {
            let excerpt = outcome.isClean ? [] : RunLog.excerpt(of: logPath(index), crashed: outcome.isCrash)
            let seconds = (ContinuousClock.now - start).seconds
            records[index] = RunRecord(run: runs[index], outcome: outcome, seconds: seconds, logExcerpt: excerpt)
            let end = Date().timeIntervalSince1970
            try? directory.write(RunStatusFile.line(for: outcome, start: end - seconds, end: end) + "\n", to: directory.statusPath(index))
            done += 1
            if !outcome.isClean && !outcome.isSkipped { failed += 1 }
            progress(done, failed)
        }
        progress(0, 0)
        while next < runs.count || !running.isEmpty {
            if stopSignal.load(ordering: .relaxed) != 0 {
                for job in running { job.child.kill() }
                for job in running { _ = job.child.wait() }
                break
            }
            while running.count < jobs && next < runs.count {
                let index = next
                next += 1
                let now = ContinuousClock.now
                do {
                    let child = try ChildProcess(
                        executable: executable, arguments: arguments(index), environment: environment, outputPath: logPath(index))
                    let limit = Duration.milliseconds(Int64(timeout(runs[index].scenario) * 1000))
                    running.append(Running(index: index, child: child, started: now, deadline: now + limit))
                } catch {
                    finish(index, .notStarted(reason: error.description), since: now)
                }
            }
            var ended = false
            running.removeAll { job in
                if let termination = job.child.poll() {
                    finish(job.index, outcome(of: termination, index: job.index), since: job.started)
                    ended = true
                    return true
                }
                guard ContinuousClock.now >= job.deadline else { return false }
                job.child.kill()
                _ = job.child.wait()
                finish(job.index, .hung(afterSeconds: (ContinuousClock.now - job.started).seconds), since: job.started)
                ended = true
                return true
            }
            if !ended { scheduler.sleep(for: .milliseconds(20)) }  // a stop signal is seen within one sleep
        }
        return records
    }

    /// The log file of run `index` (its stdout and stderr).
    func logPath(_ index: Int) -> String { directory.logPath(index) }

    /// The JSON report of run `index`.
    func jsonPath(_ index: Int) -> String { directory.resultPath(index) }

    private func arguments(_ index: Int) -> [String] {
        let run = runs[index]
        // The name last, after `--`: a file named `-x.yaml` is not an option.
        return ["run", "--seed", String(run.seed), "--json", jsonPath(index)] + extraArguments + ["--", run.scenario]
    }

    private func outcome(of termination: Termination, index: Int) -> RunOutcome {
        switch termination {
        case .signaled(let signal): return .crashed(signal: signal)
        case .exited(0): return readRunVerdict(jsonPath(index)) == "skip" ? .skipped : .clean
        case .exited(2): return .badInput
        case .exited(1):
            let findings = readFindings(jsonPath(index))
            return .findings(total: findings?.total, first: findings?.first)
        case .exited(PluginCrashReport.exitStatus):
            return .pluginOops(signal: RunLog.oopsSignal(in: logPath(index)))
        case .exited(let status): return .exited(status: status)
        }
    }
}
