import Testing

@testable import KernelDiff

@Suite("Known differences")
struct KnownDifferencesTests {
    @Test func rowsCiteReasonsAndMatchByScriptStepAndObservable() throws {
        let list = try KnownDifferences.parse(
            """
            reason zero: no zero page
            reason other: something else
            fresh 2 zero pagemap a        # exact
            fresh * zero,other invalidated
            * 3 other pagemap *
            """, path: "k")
        #expect(list.reasons["zero"] == "no zero page")
        #expect(list.rows.count == 3)
        #expect(list.rows[1].reasons == ["zero", "other"])
        #expect(list.row(script: "fresh", step: 2, observable: "pagemap a")?.line == 3)
        #expect(list.row(script: "fresh", step: 2, observable: "pagemap b") == nil)
        #expect(list.row(script: "fresh", step: 9, observable: "invalidated")?.line == 4)
        #expect(list.row(script: "anything", step: 3, observable: "pagemap zz")?.line == 5)
        #expect(list.row(script: "anything", step: 4, observable: "pagemap zz") == nil)
    }

    @Test(arguments: [
        ("x 1 missing pagemap a\n", 1, "no `reason missing:` line for this row"),
        ("reason a text\n", 1, "expected `reason KEY: text`"),
        ("reason a: one\nreason a: two\n", 2, "reason `a` is defined twice"),
        ("reason a: t\nx 0 a pagemap a\n", 2, "a step is a number from 1 or *, not `0`"),
        ("reason a: t\nx 1 a\n", 2, "expected `SCRIPT STEP REASON OBSERVABLE`"),
    ])
    func refusesMalformedLists(text: String, line: Int, message: String) {
        #expect(throws: ScriptError(path: "k", line: line, message: message)) { try KnownDifferences.parse(text, path: "k") }
    }

    @Test func theLibraryListReadsAndEveryRowNamesAScriptThatExists() throws {
        let list = try libraryKnownDifferences()
        let names = Set(try libraryScripts().map(\.name))
        #expect(!list.rows.isEmpty)
        for row in list.rows { #expect(row.script == "*" || names.contains(row.script), "line \(row.line) names no script: \(row)") }
    }

    /// A row is stale when the step ran and agreed where the row expects a
    /// difference: the harness says so, so the row is removed when the model is fixed.
    @Test func aRowThatMatchesNoDifferenceIsStale() throws {
        let script = try ScriptParser.parse("map a anon 1\nread a 0\n", path: "s.kdiff")
        let list = try KnownDifferences.parse("reason r: why\ns 2 r pagemap a\ns 1 r result\nother 1 r result\n", path: "k")
        let agreeing = Observable(name: "pagemap a", value: "Nx")
        let differing = ObservableResult(
            name: "result", kernel: Observable(name: "result", value: "ok"), model: Observable(name: "result", value: "error"),
            known: list.rows[1])
        let result = ScriptResult(
            script: script, facts: MachineFacts(kernel: "test", nodes: 1, swapDevices: 0),
            steps: [
                StepResult(step: script.steps[0], status: .knownDifference, observables: [differing]),
                StepResult(
                    step: script.steps[1], status: .agree,
                    observables: [ObservableResult(name: "pagemap a", kernel: agreeing, model: agreeing, known: nil)]),
            ], matchedRows: [list.rows[1]])
        let diff = KernelDiff(runnerPath: "/nonexistent", knownDifferences: list)
        // Row 2 (step 2 agrees) is stale; row 3 (matched) is not; row 4 names a script that did not run.
        #expect(diff.staleRows(after: [result]) == [list.rows[0]])
    }
}
