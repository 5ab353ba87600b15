import Testing
import VirtualMemory

@testable import KernelDiff

/// The model side alone (runs everywhere): the script's primitives through
/// the model's public API, seen by the KVM-like guest subscriber.
@Suite("Model side")
struct ModelSideTests {
    static let facts = MachineFacts(kernel: "none", nodes: 1, swapDevices: 0)

    /// Runs `text` in the model; the observables of each step.
    func run(_ text: String, faults: MemoryFaultInjection = []) throws -> [[Observable]] {
        let script = try ScriptParser.parse(text, path: "model.kdiff")
        let model = ModelSide(facts: Self.facts, faults: faults)
        defer { model.finish() }
        var view = Normaliser(script: script)
        _ = model.snapshot()
        return script.steps.map { step in
            let primitives = step.primitives(nodes: 1)
            let outcomes = primitives.map(model.perform)
            var snap = model.snapshot()
            snap.outcomes = outcomes
            return view.observe(step, primitives, snap)
        }
    }

    func value(_ step: [Observable], _ name: String) -> String? { step.first { $0.name == name }?.value }

    /// The guest subscriber is a correct secondary MMU: over the whole
    /// library the model's checks (stale translation, use after free, write
    /// through a read-only translation...) record nothing, and the notifier
    /// core no contract violation. With mprotect's invalidation skipped, the
    /// guest's writes through the translation it kept are caught by the model too.
    @Test func theGuestBreaksNoRuleOfTheModel() throws {
        for faults in [MemoryFaultInjection(), .skipMprotectInvalidation] {
            var violations: [String] = []
            for script in try libraryScripts() {
                let model = ModelSide(facts: Self.facts, faults: faults)
                for step in script.steps { _ = step.primitives(nodes: 1).map(model.perform) }
                model.finish()
                violations += model.machine.violations.snapshot.map { "\(script.name): \($0)" }
                violations += model.machine.notifierCore.contractViolations.snapshot.map { "\(script.name): \($0)" }
            }
            if faults.isEmpty {
                #expect(violations.isEmpty, "\(violations)")
            } else {
                #expect(violations.contains { $0.hasPrefix("mprotect-readonly-then-write: ") }, "\(violations)")
            }
        }
    }

    @Test func forkThenParentWrite() throws {
        let steps = try run("map a anon 2\nwrite a all 1\nguest-read a 0\nfork\nwrite a 0 2\nchild-read a 0\nguest-read a 0\nchild-exit\nexit\n")
        #expect(value(steps[2], "guest-read a[0]") == "0x1")
        #expect(value(steps[3], "invalidated") == "a[0-1]", "fork write-protects the parent's pages")
        #expect(value(steps[3], "pagemap a") == "Ks Ks")
        #expect(value(steps[3], "child a") == "Ks Ks")
        #expect(value(steps[4], "invalidated") == "a[0]", "the parent's write copies the page")
        #expect(value(steps[4], "pagemap a") == "Cx Ks")
        #expect(value(steps[5], "child-read a[0]") == "0x1")
        #expect(value(steps[6], "guest-read a[0]") == "0x2", "the guest follows the copy")
        #expect(value(steps[7], "pagemap a") == "Kx Kx", "the child's exit leaves the parent's pages exclusive")
        #expect(value(steps[8], "invalidated") == "none", "exit releases the guest before it unmaps")
    }

    @Test func mprotectInvalidatesUnlessTheFaultSwitchSkipsIt() throws {
        let text = "map a anon 2\nwrite a all 1\nguest-write a 0 2\nmprotect a r\nguest-write a 0 4\nguest-read a 0\nexit\n"
        let healthy = try run(text)
        #expect(value(healthy[3], "invalidated") == "a[0-1]")
        #expect(value(healthy[4], "guest-write a[0]") == "fault")
        #expect(value(healthy[5], "guest-read a[0]") == "0x2")
        let broken = try run(text, faults: .skipMprotectInvalidation)
        #expect(value(broken[3], "invalidated") == "none")
        #expect(value(broken[4], "guest-write a[0]") == "ok", "the guest writes through the writable translation it kept")
        #expect(value(broken[5], "guest-read a[0]") == "0x4")
    }

    @Test func sharedAndFileMappingsReportResidency() throws {
        let steps = try run("map f file 2\nmap s shared 2\nwrite f 0 3\nwrite s 1 4\ndontneed s\nmunmap f 1\nexit\n")
        #expect(value(steps[2], "resident f") == "10")
        #expect(value(steps[3], "resident s") == "01")
        #expect(value(steps[4], "pagemap s") == ". .")
        #expect(value(steps[4], "resident s") == "01", "DONTNEED of shared memory keeps the page cache")
        #expect(value(steps[5], "resident f") == "1-")
    }

    @Test func mremapMovesThePagesAndTheGuestFollows() throws {
        let steps = try run("map a anon 2\nwrite a 1 5\nmremap a\nguest-read a 1\nexit\n")
        #expect(value(steps[2], "invalidated") == "a[0-1]")
        #expect(value(steps[2], "pagemap a") == ". Kx")
        #expect(value(steps[3], "guest-read a[1]") == "0x5")
    }

    @Test func ksmMergesIdenticalMergeablePages() throws {
        let steps = try run("map a anon 3\nwrite a 0-1 7\nwrite a 2 8\nmergeable a\nksm\nwrite a 0 9\nexit\n")
        #expect(value(steps[4], "invalidated") == "a[0-1]")
        #expect(value(steps[4], "pagemap a") == "Cs Cs Kx")
        #expect(value(steps[5], "invalidated") == "a[0]", "a write breaks the sharing")
        #expect(value(steps[5], "pagemap a") == "Cx Kx Kx")
    }
}
