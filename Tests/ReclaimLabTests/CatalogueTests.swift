import ReclaimLab
import Testing
import TestSupport

/// Every built-in scenario reads, and runs clean for a short length with
/// the bundled plugins.
@Suite("Built-in scenarios")
struct CatalogueTests {
    @Test(arguments: Catalogue.entries.map(\.name))
    func runsCleanForAShortLength(name: String) throws {
        let scenario = try #require(try Catalogue.scenario(named: name))
        #expect(scenario.name == name)
        var options = RunOptions()
        options.seed = testSeed
        options.operations = 4_000 * stressScale
        if scenario.pressure.oomKill != nil { options.operations = nil; options.seconds = 1.0 }
        let result = try ScenarioRunner.run(scenario, options: options)
        #expect(result.findings.isEmpty, "\(name), seed \(testSeed): \(result.findings.prefix(5))")
        #expect(result.operations > 0)
    }
}
