public import LabSync

/// Cuts a failing deterministic run down while the same bug (by title)
/// still appears. Its moves:
///
/// - **Cut.** The step the run is cut at (`ShrinkCandidate.stopAtStep`) is
///   bisected: the earliest cut after which the bug still shows. (Findings
///   the main thread collects, the primary's checks, are noted when the
///   actors stop, so the cut, not the main thread's next poll, decides.)
/// - **Parts.** Delta debugging (`DeltaDebugging`) over the scenario's
///   actors and plugins (`ScenarioReduction.parts`): the fewest workloads,
///   sources of pressure and plugins that still fail.
/// - **Edits.** Greedy passes over `ScenarioReduction.edits` and a shorter
///   length: fewer threads, less memory, smaller mappings, lower rates,
///   higher rates where they make the bug come sooner. An edit is kept when
///   the run still fails and is smaller: fewer threads (the bug may come
///   later), or as many threads and the bug no later (`.smaller`), or
///   strictly sooner (`.sooner`). Every kept edit makes (threads, bug's
///   step, the scenario's sizes) smaller in that order, so the passes end.
/// - **Schedule.** The run's scheduling choices up to the bug's step are
///   recorded (`ScheduleChoices`: the deviations from non-preemptive round
///   robin) and cut down by delta debugging: the fewest that still fail.
///   Then each choice left is moved as early as it still fails (with the
///   ones after it): a preemption the strategy happened to make late is
///   made as soon as the race can happen, and the cut follows.
/// - **Length.** The scenario's length cut to just past the bug.
///
/// In that order: cut, parts, edits (under the seeded strategy: a schedule
/// names threads and program points, and holds only for the scenario it
/// was recorded in), cut, schedule, cut, edits again (with the schedule:
/// the runs are short by now), the choices moved again, cut, length.
///
/// Every candidate run is cut at a step: the current cut for an edit that
/// must not make the bug later, twice the bug's step and 50,000 more for
/// one that drops threads, so no run is much longer than the failing one.
/// `budget` bounds the runs in all, and each move stops at its share of
/// it (so the schedule gets its turn).
///
/// Deterministic: the moves try candidates in a fixed order and decide
/// only on what the runs give, so the same input and runner give the same
/// result (as long as the runner's runs are deterministic, which runs
/// under a controlled scheduler are, and none hits a wall-clock timeout).
public final class Shrinker {
    /// The bug's title (`Bug.title`): the one property every candidate must keep.
    public let title: String
    /// Candidate runs at most, in all.
    public let budget: Int
    /// Runs a candidate; nil when it did not end as a run does (refused,
    /// crashed, timed out): such a candidate does not fail with the bug.
    private let runner: (ShrinkCandidate) -> CandidateOutcome?
    /// Told each phase's start and each change kept, one line each.
    private let log: (String) -> Void
    /// Runs so far.
    public private(set) var runs = 0

    public struct Failure: Error, CustomStringConvertible {
        public let description: String
    }

    /// What the shrink gave: the first failing run (the input, rerun) and
    /// the last, the choices each had up to its bug, the runs made, and
    /// whether each delta-debugging search ended 1-minimal.
    public struct Outcome: Sendable {
        public var before: ShrinkState
        /// The input run's recorded choices up to its bug (nil if the budget left none to record).
        public var choicesBefore: Int?
        public var after: ShrinkState
        public var runs: Int
        public var partsMinimal: Bool
        public var choicesMinimal: Bool
        /// What was kept, in order.
        public var kept: [String]
    }

    public init(title: String, budget: Int, log: @escaping (String) -> Void = { _ in }, runner: @escaping (ShrinkCandidate) -> CandidateOutcome?) {
        self.title = title
        self.budget = budget
        self.log = log
        self.runner = runner
    }

    /// Shrinks `scenario` (with `choices`, if the failing run followed some),
    /// whose run fails with the bug first at `failingStep`.
    public func shrink(_ scenario: Scenario, choices: ScheduleChoices?, failingStep: UInt64) throws(Failure) -> Outcome {
        // The input again, its choices recorded: it must fail as the report says.
        guard let (base, recorded) = attempt(scenario, choices, stopAt: failingStep, record: true)
            ?? attempt(scenario, choices, stopAt: Self.looseBound(failingStep), record: true)
        else {
            throw Failure(description: "the report's run does not fail with '\(title)' when its scenario is run again (by step \(Self.looseBound(failingStep)))")
        }
        log("baseline  fails at step \(base.step): \(base.threads) threads, \(base.switches) switches, \(recorded?.cut(atStep: base.step).choices.count ?? 0) choices up to the bug")
        var kept: [String] = []
        var best = base
        func share(_ percent: Int) -> Int { max(budget * percent / 100, 1) }
        // The scenario first, under the seeded strategy (a schedule names
        // threads and program points: it holds only for the scenario it was
        // recorded in); then the schedule, after which runs are short; then
        // the scenario again, with the schedule, and the schedule again.
        bisectCut(&best, kept: &kept, until: share(10))
        let partsMinimal = shrinkParts(&best, kept: &kept, until: share(30))
        shrinkByEdits(&best, kept: &kept, only: [.fewerThreads, .smaller, .sooner], until: share(55))
        bisectCut(&best, kept: &kept, until: share(60))
        var choicesMinimal = shrinkChoices(&best, kept: &kept, until: share(75))
        advanceChoices(&best, kept: &kept, until: share(82))
        bisectCut(&best, kept: &kept, until: share(86))
        shrinkByEdits(&best, kept: &kept, only: [.smaller, .sooner], until: share(90))
        // Whatever budget is left: the choices cut down again (a choice moved
        // earlier may do another's work), moved, and the run cut, while that helps.
        while runs < budget - 1 {
            let (step, count) = (best.step, best.choices?.choices.count ?? 0)
            let minimal = shrinkChoices(&best, kept: &kept, until: budget - 1)
            if runs < budget - 1 { choicesMinimal = minimal }
            advanceChoices(&best, kept: &kept, until: budget - 1)
            bisectCut(&best, kept: &kept, until: budget - 1)
            if best.step >= step && (best.choices?.choices.count ?? 0) >= count { break }
        }
        cutLength(&best, kept: &kept)
        // Past the bug the strategy decides (the run up to it is unchanged).
        best.choices = best.choices?.cut(atStep: best.step)
        return Outcome(
            before: base, choicesBefore: recorded?.cut(atStep: base.step).choices.count, after: best, runs: runs, partsMinimal: partsMinimal,
            choicesMinimal: choicesMinimal, kept: kept)
    }

    // MARK: Phases

    /// The earliest cut that still fails, by bisection (to within 2% of it).
    private func bisectCut(_ best: inout ShrinkState, kept: inout [String], until limit: Int) {
        var tooEarly: UInt64 = 0
        var found = best
        while found.cut - tooEarly > max(1, found.cut / 50) && runs < limit {
            let middle = tooEarly + (found.cut - tooEarly) / 2
            if let (state, _) = attempt(best.scenario, best.choices, stopAt: middle), state.threads <= best.threads, state.cut < found.cut {
                found = state
            } else {
                tooEarly = middle
            }
        }
        guard found.cut < best.cut else { return }
        note("the run cut at step \(found.cut)", from: best, to: found, kept: &kept)
        best = found
    }

    /// Delta debugging over the scenario's parts. Returns whether the search ended 1-minimal.
    private func shrinkParts(_ best: inout ShrinkState, kept: inout [String], until limit: Int) -> Bool {
        let parts = ScenarioReduction.parts(of: best.scenario)
        guard parts.count > 1 else { return true }
        let base = best
        var failing: [[Int]: ShrinkState] = [:]
        let bound = Self.looseBound(base.step)
        let search = DeltaDebugging.minimize(count: parts.count, budget: max(limit - runs, 0)) { indices in
            let scenario = ScenarioReduction.keeping(Set(indices.map { parts[$0] }), of: base.scenario)
            guard !scenario.workloads.isEmpty, ScenarioReduction.isValid(scenario) else { return false }
            guard let (state, _) = attempt(scenario, base.choices, stopAt: bound) else { return false }
            guard state.threads <= base.threads else { return false }
            failing[indices] = state
            return true
        }
        if let state = failing[search.kept] {
            let dropped = parts.indices.filter { !search.kept.contains($0) }.map { parts[$0].description }
            note("without \(dropped.joined(separator: ", "))", from: best, to: state, kept: &kept)
            best = state
        }
        return search.isMinimal
    }

    /// Greedy passes over the edits of the kinds `only`; after a kept edit
    /// the pass goes on at the same place in the new scenario's edits.
    private func shrinkByEdits(_ best: inout ShrinkState, kept: inout [String], only kinds: Set<ScenarioEdit.Kind>, until limit: Int) {
        var changed = true
        while changed && runs < limit {
            changed = false
            var index = 0
            while runs < limit {
                let edits = (ScenarioReduction.edits(of: best.scenario) + (lengthEdit(best).map { [$0] } ?? [])).filter { kinds.contains($0.kind) }
                guard index < edits.count else { break }
                let edit = edits[index]
                index += 1
                guard ScenarioReduction.isValid(edit.scenario) else { continue }
                let stop: UInt64
                switch edit.kind {
                case .fewerThreads: stop = Self.looseBound(best.step)
                case .smaller: stop = best.cut
                case .sooner:
                    guard best.cut > 1 else { continue }
                    stop = best.cut - 1
                }
                guard let (state, _) = attempt(edit.scenario, best.choices, stopAt: stop) else { continue }
                let better: Bool
                switch edit.kind {
                case .fewerThreads: better = state.threads < best.threads || (state.threads == best.threads && state.step <= best.step)
                case .smaller: better = state.threads <= best.threads && state.step <= best.step
                case .sooner: better = state.threads <= best.threads && state.step < best.step
                }
                guard better else { continue }
                note(edit.description, from: best, to: state, kept: &kept)
                best = state
                changed = true
                index -= 1  // the same place in the new list
            }
        }
    }

    /// The choices up to the bug, recorded, cut down by delta debugging.
    private func shrinkChoices(_ best: inout ShrinkState, kept: inout [String], until limit: Int) -> Bool {
        guard runs < limit, let (recordedRun, recorded) = attempt(best.scenario, best.choices, stopAt: best.cut, record: true),
            let recorded
        else { return false }
        // The recording run is the best run again (deterministic), cut at its bug.
        let base = recordedRun
        let list = recorded.cut(atStep: base.step)
        var failing: [[Int]: ShrinkState] = [:]
        let search = DeltaDebugging.minimize(count: list.choices.count, budget: max(limit - runs, 0)) { indices in
            guard let (state, _) = attempt(base.scenario, list.keeping(indices), stopAt: base.cut) else { return false }
            guard state.threads <= base.threads else { return false }
            failing[indices] = state
            return true
        }
        if let state = failing[search.kept] {
            note("\(search.kept.count) of the \(list.choices.count) scheduling choices up to the bug", from: best, to: state, kept: &kept)
            best = state
        } else {
            // Every choice is needed (or no test ran): the whole recorded list.
            best = base
            best.choices = list
        }
        // Cut at the bug: past it the strategy decides (the run up to it is unchanged).
        best.choices = best.choices?.cut(atStep: best.step)
        return search.isMinimal
    }

    /// Each choice, and every one after it, moved as early as it still
    /// fails: tried at the earliest decision it can have (just after the
    /// choice before it), then 1, 3, 7, ... decisions later; at the first
    /// that fails, four places evenly between it and the one before are
    /// tried too, and the earliest that fails is kept. Before that, for a
    /// choice after the first, the same without the choices before it,
    /// from decision 1: a late choice may do an earlier one's work sooner.
    /// (Not a bisection: whether a run fails is not monotone in where a
    /// choice falls; a thread's loop passes the choice's site in many
    /// states, some of which make another bug or none.) The runs record
    /// their choices, which become the list (with their steps).
    private func advanceChoices(_ best: inout ShrinkState, kept: inout [String], until limit: Int) {
        var index = 0
        while runs < limit, let list = best.choices, index < list.choices.count {
            let dropping = index > 0 ? [true, false] : [false]
            for dropsEarlier in dropping where runs < limit {
                if let (found, shift) = advance(index, of: list, dropsEarlier: dropsEarlier, from: best, until: limit) {
                    let what = dropsEarlier ? "without the \(index) before it, " : ""
                    note("choice \(index + 1) (and those after it) \(what)\(shift) decisions sooner", from: best, to: found, kept: &kept)
                    best = found
                    if dropsEarlier { index = 0 }  // the list starts with it now
                    break
                }
            }
            index += 1
        }
    }

    /// The ladder of `advanceChoices` for choice `index` of `list`: the run
    /// that fails with it earliest, and how many decisions sooner it is.
    private func advance(
        _ index: Int, of list: ScheduleChoices, dropsEarlier: Bool, from best: ShrinkState, until limit: Int
    ) -> (ShrinkState, UInt64)? {
        let here = list.choices[index].decision
        let earliest = index == 0 || dropsEarlier ? 1 : list.choices[index - 1].decision + 1
        // Nowhere to go (only dropping the ones before, which `dropsEarlier` tries in place).
        guard here > earliest || (dropsEarlier && here >= earliest) else { return nil }
        /// The run with choice `index` and those after it at `earliest + offset` on, if it fails.
        func moved(to offset: UInt64) -> ShrinkState? {
            let shift = here - (earliest + offset)
            let choices = list.choices.enumerated().compactMap { position, choice -> ScheduleChoice? in
                guard position >= index else { return dropsEarlier ? nil : choice }
                var choice = choice
                choice.decision -= shift
                return choice
            }
            // Still sorted: the moved choice stays after the one before it.
            let candidate = ScheduleChoices(choices, through: list.through)!
            guard let (state, recorded) = attempt(best.scenario, candidate, stopAt: best.cut, record: true), let recorded,
                state.threads <= best.threads, state.step <= best.step
            else { return nil }
            var found = state
            found.choices = recorded.cut(atStep: state.step)
            return found
        }
        var offset: UInt64 = 0
        var passed: UInt64? = nil  // the last offset that did not fail
        // In place, dropping the ones before is a move too.
        let last = dropsEarlier ? here - earliest : here - earliest - 1
        while offset <= last && runs < limit {
            if var found = moved(to: offset) {
                var at = offset
                if let passed, offset - passed > 4 {
                    // Between the last place that passed and this one.
                    for k in UInt64(1)...4 where runs < limit {
                        let between = passed + (offset - passed) * k / 5
                        if let earlier = moved(to: between) {
                            found = earlier
                            at = between
                            break
                        }
                    }
                }
                return (found, here - (earliest + at))
            }
            passed = offset
            offset = offset == last ? last + 1 : min(offset * 2 + 1, last)
        }
        return nil
    }

    /// The length cut to just past the bug, if that still fails.
    private func cutLength(_ best: inout ShrinkState, kept: inout [String]) {
        guard runs < budget, let edit = lengthEdit(best), let (state, _) = attempt(edit.scenario, best.choices, stopAt: best.cut),
            state.step <= best.step
        else { return }
        note(edit.description, from: best, to: state, kept: &kept)
        best = state
    }

    // MARK: Runs

    /// Runs a candidate (if the budget allows) and returns the state if it failed with the bug.
    private func attempt(
        _ scenario: Scenario, _ choices: ScheduleChoices?, stopAt: UInt64, record: Bool = false
    ) -> (ShrinkState, ScheduleChoices?)? {
        guard runs < budget else { return nil }
        runs += 1
        guard let outcome = runner(ShrinkCandidate(scenario: scenario, choices: choices, stopAtStep: stopAt, recordsChoices: record)),
            let bug = outcome.bugs.first(where: { $0.title == title })
        else { return nil }
        let step = bug.step ?? outcome.steps
        let state = ShrinkState(
            scenario: scenario, choices: choices, step: step, cut: min(step, stopAt), seconds: bug.seconds, steps: outcome.steps,
            threads: outcome.threads, switches: outcome.switches)
        return (state, outcome.recorded)
    }

    /// The scenario's length cut to 5 ms (of virtual time) past the bug, in
    /// whole milliseconds, if that is shorter than it is.
    private func lengthEdit(_ state: ShrinkState) -> ScenarioEdit? {
        guard let seconds = state.seconds else { return nil }
        let cut = ((seconds + 0.005) * 1_000).rounded(.up) / 1_000
        var scenario = state.scenario
        switch scenario.length {
        case .seconds(let length) where length <= cut: return nil
        default: scenario.length = .seconds(cut)
        }
        return ScenarioEdit(description: "a length of \(ReplayCommand.secondsText(cut)) (virtual)", kind: .smaller, scenario: scenario)
    }

    /// The cut for a candidate that may fail later than `step`: twice as late, and 50,000 steps more.
    static func looseBound(_ step: UInt64) -> UInt64 {
        let (twice, overflow) = step.multipliedReportingOverflow(by: 2)
        return overflow ? .max : twice.addingReportingOverflow(50_000).partialValue
    }

    private func note(_ what: String, from: ShrinkState, to: ShrinkState, kept: inout [String]) {
        let line = "\(what): \(from.threads) -> \(to.threads) threads, bug at step \(from.step) -> \(to.step), cut at \(from.cut) -> \(to.cut) (run \(runs))"
        kept.append(line)
        log("kept      " + line)
    }
}
