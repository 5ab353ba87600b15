import Testing
import VirtualMemory

@testable import KernelDiff

/// The library of scripts against this machine's Linux: every difference
/// must be a known one, and every known one must still differ.
@Suite("Differential suite against the real kernel", .serialized, .enabled(if: KernelAvailability.usable, KernelAvailability.reason))
struct DifferentialSuiteTests {
    @Test func theLibraryAgreesWithThisKernelOrKnowsWhy() throws {
        let list = try libraryKnownDifferences()
        let diff = KernelDiff(knownDifferences: list)
        let results = try libraryScripts().map { try diff.run($0) }
        let stale = diff.staleRows(after: results)
        let totals = Totals(results)
        print(Report.summary(results))
        #expect(totals.scripts >= 30)
        #expect(
            totals.unexpected == 0,
            "unexpected differences:\n\(Report.render(results.filter { $0.unexpected > 0 }, stale: [], reasons: list.reasons, verbose: false))")
        #expect(stale.isEmpty, "known-difference rows that no longer differ (remove them): \(stale.map { "line \($0.line): \($0)" })")
        // The comparison is not vacuous: most steps invalidate, map or read something.
        #expect(totals.compared > 200 && totals.agreement > 50)
    }

    /// The deliberate model bug: mprotect without its invalidation. Every
    /// script whose mprotect invalidates on the real kernel now fails;
    /// scripts without mprotect do not.
    @Test func skippingMprotectsInvalidationFailsTheScriptsThatExerciseIt() throws {
        let list = try libraryKnownDifferences()
        let healthy = KernelDiff(knownDifferences: list)
        let broken = KernelDiff(knownDifferences: list, faults: .skipMprotectInvalidation)
        let all = try libraryScripts()
        // (Not the huge-page scripts: there a partial mprotect splits the
        // huge page first, and the split's own CLEAR over the 2 MiB covers
        // the pages whether or not mprotect's range reaches the guest.)
        let withMprotect = all.filter { script in
            !script.name.hasPrefix("thp-") && script.steps.contains { if case .mprotect = $0.operation { true } else { false } }
        }
        let without = all.filter { !withMprotect.contains($0) }.prefix(4)
        #expect(withMprotect.count >= 6)
        var exercised = 0
        for script in withMprotect {
            // Exercised: an mprotect step whose invalidation reaches KVM on the real kernel.
            let real = try healthy.run(script)
            let invalidating = real.steps.filter { step in
                guard case .mprotect = step.step.operation else { return false }
                return step.observables.first { $0.name == "invalidated" }?.kernel?.value != "none"
            }
            let result = try broken.run(script)
            if invalidating.isEmpty {
                #expect(result.unexpected == 0, "\(script.name) invalidates nothing at its mprotect, yet fails")
            } else {
                exercised += 1
                let failing = result.steps.filter { $0.status == .differ }.map(\.step.number)
                #expect(!failing.isEmpty, "\(script.name) passes with mprotect's invalidation skipped")
                for step in invalidating {
                    #expect(failing.contains(step.step.number), "\(script.name) step \(step.step.number) (\(step.step.text)) not caught")
                }
            }
        }
        #expect(exercised >= 6)
        for script in without {
            #expect(try broken.run(script).unexpected == 0, "\(script.name) has no mprotect, yet fails")
        }
    }
}
