import LabSync
import ReclaimLab
import Testing

/// The shrinker's pieces without running the lab: the parts and edits of a
/// scenario, and the phases against a model of a failing program (the runs
/// themselves are `mmulab shrink`'s, tested in MMULabCLITests).
@Suite("Shrinking")
struct ShrinkTests {
    static func munmapRace() throws -> Scenario { try #require(try Catalogue.scenario(named: "munmap-race")) }

    @Test func aScenarioSPartsAreItsActorsAndPlugins() throws {
        let s = try Self.munmapRace()
        #expect(ScenarioReduction.parts(of: s) == [
            .workload("shader"), .workload("peer"), .workload("steady"), .backgroundReclaim, .churn(0), .plugin("gpu"), .plugin("nic"),
        ])
        // A dropped plugin takes its workloads (and nothing else).
        let withoutNic = ScenarioReduction.keeping(Set(ScenarioReduction.parts(of: s).filter { $0 != .plugin("nic") }), of: s)
        #expect(withoutNic.plugins.map(\.name) == ["gpu"] && withoutNic.workloads.map(\.name) == ["shader", "steady"])
        #expect(ScenarioReduction.isValid(withoutNic))
        // Parts dropped: kswapd off, the churn gone, the mapping nothing uses any more pruned
        // (the GPU still binds app/steady: it stays until that binding goes).
        let bare = ScenarioReduction.keeping([.workload("shader"), .plugin("gpu")], of: s)
        #expect(!bare.pressure.backgroundReclaim && bare.pressure.churn.isEmpty && bare.workloads.map(\.name) == ["shader"])
        #expect(bare.spaces.flatMap(\.mappings).map(\.name) == ["churned", "steady"] && ScenarioReduction.isValid(bare))
        let unbound = try #require(ScenarioReduction.edits(of: bare).first { $0.description.contains("no binding on app/steady") })
        #expect(unbound.scenario.spaces.flatMap(\.mappings).map(\.name) == ["churned"] && ScenarioReduction.isValid(unbound.scenario))
        // Nothing left to run is no scenario.
        #expect(!ScenarioReduction.isValid(ScenarioReduction.keeping([.plugin("gpu")], of: s)))
    }

    /// What an edit may change, summed: a `.smaller` edit makes one of these
    /// smaller and none larger (rates apart, which it lowers); `.sooner`
    /// raises a rate; `.fewerThreads` lowers a thread or instance count.
    struct Sizes: Equatable {
        var threads = 0, instances = 0, bindings = 0, frames = 0, nodes = 0, swap = 0, pages = 0, rates = 0
        init(_ s: Scenario) {
            threads = s.workloads.map(\.threads).reduce(0, +)
            instances = s.plugins.map(\.instances).reduce(0, +)
            bindings = s.plugins.map(\.bindings.count).reduce(0, +)
            frames = s.machine.frames
            nodes = s.machine.nodes
            swap = s.machine.swapSlots
            pages = s.spaces.flatMap(\.mappings).map(\.pages).reduce(0, +) + (s.pressure.balloonPages ?? 0)
                + (s.pressure.deviceMigration + s.pressure.attachChurn).map(\.pages).reduce(0, +) + s.pressure.exitRelease.map(\.pages).reduce(0, +)
            let p = s.pressure
            rates = s.workloads.map(\.rate).reduce(0, +) + (p.migrationRate ?? 0) + (p.ksmScansPerSecond ?? 0)
                + (p.churn + p.mprotect + p.forkRate + p.writeback).map(\.rate).reduce(0, +)
                + (p.deviceMigration + p.attachChurn).map(\.rate).reduce(0, +) + p.exitRelease.map(\.rate).reduce(0, +)
        }
        var counts: [Int] { [threads, instances, bindings, frames, nodes, swap, pages] }
    }

    @Test(arguments: Catalogue.entries.map(\.name))
    func everyEditShrinksWhatItSays(_ name: String) throws {
        let scenario = try #require(try Catalogue.scenario(named: name))
        let before = Sizes(scenario)
        let edits = ScenarioReduction.edits(of: scenario)
        #expect(!edits.isEmpty, "\(name): nothing to shrink")
        for edit in edits {
            let after = Sizes(edit.scenario)
            let label = "\(name): \(edit.description)"
            switch edit.kind {
            case .fewerThreads:
                #expect(after.threads < before.threads || after.instances < before.instances, "\(label)")
            case .smaller:
                let lowered = zip(after.counts, before.counts).contains { $0 < $1 } || after.rates < before.rates
                    || edit.scenario.machine.lowWatermark == nil && scenario.machine.lowWatermark != nil
                #expect(lowered && zip(after.counts, before.counts).allSatisfy { $0 <= $1 } && after.rates <= before.rates, "\(label)")
            case .sooner:
                #expect(after.rates > before.rates || (edit.scenario.pressure.oomKill?.afterMilliseconds ?? 0) < (scenario.pressure.oomKill?.afterMilliseconds ?? 0),
                        "\(label)")
            }
        }
        // Numbers go to their floor first: one run where the floor will do.
        if let frames = edits.firstIndex(where: { $0.description.hasSuffix("frames, not \(scenario.machine.frames)") }) {
            #expect(edits[frames].scenario.machine.frames == 64, "\(name): \(edits[frames].description)")
        }
    }

    // MARK: The phases against a model

    /// A model of a failing program: the bug shows when the scenario has
    /// the workload `shader` and the churn. Under the seeded strategy it
    /// shows at step 20,000 + 5,000 a workload + 10 a churned page; under
    /// a schedule, when the list has a choice that runs thread 2 (and at
    /// step 100 after the first such choice's decision). A run records 30
    /// choices, one every 10 decisions, running threads 1, 2, 3 in turn (a
    /// run that follows a list records the list).
    /// Another bug is always there, to show the title is what counts.
    final class Model: @unchecked Sendable {
        var runs: [ShrinkCandidate] = []

        func run(_ candidate: ShrinkCandidate) -> CandidateOutcome? {
            runs.append(candidate)
            let s = candidate.scenario
            let workloadThreads: Int = s.workloads.map(\.threads).reduce(0, +)
            let kswapd: Int = s.pressure.backgroundReclaim ? 1 : 0
            let threads: Int = 1 + workloadThreads + kswapd + s.pressure.churn.count
            var bugs = [CandidateOutcome.BugSeen(title: "noise", step: 1, seconds: 0)]
            let has = s.workloads.contains { $0.name == "shader" } && !s.pressure.churn.isEmpty
            var step: UInt64? = nil
            if has {
                if let list = candidate.choices {
                    step = list.choices.first { $0.thread == 2 }.map { 100 + $0.decision }
                } else {
                    let pages = s.spaces.flatMap(\.mappings).first { $0.name == "churned" }?.pages ?? 0
                    let workloads: Int = s.workloads.count
                    step = UInt64(20_000 + 5_000 * workloads + 10 * pages)
                }
            }
            if let step, step <= candidate.stopAtStep {
                bugs.append(CandidateOutcome.BugSeen(title: "the bug", step: step, seconds: Double(step) * 1e-7))
            }
            var outcome = CandidateOutcome(bugs: bugs, steps: candidate.stopAtStep + 50, threads: threads, switches: 9)
            if candidate.recordsChoices, let list = candidate.choices {
                // Following a list, a run deviates from round robin where the list says.
                outcome.recorded = ScheduleChoices(list.choices, through: candidate.stopAtStep + 50)
            } else if candidate.recordsChoices {
                var choices: [ScheduleChoice] = []
                for n in 1...30 {
                    let at = UInt64(n) * 10
                    choices.append(ScheduleChoice(decision: at, step: at, thread: UInt32(n % 3) + 1))
                }
                outcome.recorded = ScheduleChoices(choices, through: candidate.stopAtStep + 50)
            }
            return outcome
        }
    }

    @Test func theShrinkerCutsTheModelDownToItsCause() throws {
        let scenario = try Self.munmapRace()
        let start = UInt64(20_000 + 5_000 * 3 + 10 * 64)
        func shrink(budget: Int) throws -> (Shrinker.Outcome, Model) {
            let model = Model()
            let shrinker = Shrinker(title: "the bug", budget: budget) { model.run($0) }
            return (try shrinker.shrink(scenario, choices: nil, failingStep: start), model)
        }
        let (outcome, model) = try shrink(budget: 300)
        let after = outcome.after
        #expect(outcome.before.step == start && outcome.before.threads == 7)
        #expect(after.scenario.workloads.map(\.name) == ["shader"] && after.scenario.workloads[0].threads == 1, "\(outcome.kept)")
        #expect(after.scenario.plugins.map(\.name) == ["gpu"] && !after.scenario.pressure.backgroundReclaim && after.scenario.pressure.churn.count == 1)
        #expect(after.threads == 3, "main, the shader and the churn")
        // The schedule: of the 30 recorded choices, one that runs thread 2, moved to the first decision.
        let choices = try #require(after.choices).choices
        #expect(choices.count == 1 && choices.first?.thread == 2 && choices.first?.decision == 1, "\(choices)")
        #expect(after.step == 101 && after.cut == 101, "step \(after.step), cut \(after.cut)")
        #expect(outcome.partsMinimal && outcome.choicesMinimal)
        #expect(outcome.runs == model.runs.count && outcome.runs <= 300)
        // Every run is cut: none goes past twice the failing step and 50,000 more.
        #expect(model.runs.allSatisfy { $0.stopAtStep <= 2 * start + 50_000 })
        // The same input, the same shrink, run for run.
        let (again, replayed) = try shrink(budget: 300)
        #expect(again.kept == outcome.kept && again.runs == outcome.runs)
        #expect(ScenarioWriter.yaml(again.after.scenario) == ScenarioWriter.yaml(after.scenario) && again.after.choices == after.choices)
        #expect(replayed.runs.map(\.stopAtStep) == model.runs.map(\.stopAtStep))
    }

    @Test func theBudgetBoundsTheRuns() throws {
        let scenario = try Self.munmapRace()
        let model = Model()
        let outcome = try Shrinker(title: "the bug", budget: 12) { model.run($0) }.shrink(scenario, choices: nil, failingStep: 35_640)
        #expect(model.runs.count == 12 && outcome.runs == 12)
        // What it has is still a failing candidate.
        let last = try #require(model.run(ShrinkCandidate(scenario: outcome.after.scenario, choices: outcome.after.choices, stopAtStep: outcome.after.cut)))
        #expect(last.bugs.contains { $0.title == "the bug" })
    }

    @Test func aRunThatDoesNotFailIsNoStartingPoint() throws {
        let scenario = try Self.munmapRace()
        let model = Model()
        #expect(throws: Shrinker.Failure.self) {
            try Shrinker(title: "another bug", budget: 50) { model.run($0) }.shrink(scenario, choices: nil, failingStep: 35_640)
        }
        #expect(model.runs.count == 2, "the report's cut, then a looser one")
    }
}
