import ArgumentParser
import LabSync

/// `--schedule random|random:P|pct|pct:D`: a `ScheduleStrategy` on the command line.
struct ScheduleArgument: ExpressibleByArgument {
    let strategy: ScheduleStrategy

    init?(argument: String) {
        guard let strategy = ScheduleStrategy(parsing: argument) else { return nil }
        self.strategy = strategy
    }

    static var defaultCompletionKind: CompletionKind { .list(["random", "pct", "pct:2", "pct:3"]) }
}

/// The help of every command's `--schedule`.
let scheduleHelp = ArgumentHelp(
    "Run deterministically: one thread at a time, chosen from the seed, on a virtual clock, so the same seed replays the same run "
        + "(\(ScheduleStrategy.syntax)). Without it the threads run free.",
    valueName: "strategy")
