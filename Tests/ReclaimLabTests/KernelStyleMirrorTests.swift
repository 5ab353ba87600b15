import ReclaimLab
import Testing
import TestSupport

/// The kernel-style driver (Examples/KernelStyleMirror: test_hmm's shape in
/// kernel C, built on the Linux shim with one glue file) added to every
/// built-in scenario runs clean, and the run is about it: its device
/// workloads made accesses. (Its broken variants are found and named in
/// BreakageTests.)
@Suite("The kernel-style mirror through the catalogue")
struct KernelStyleMirrorTests {
    @Test(arguments: Catalogue.entries.map(\.name))
    func runsCleanInEveryBuiltInScenario(name: String) throws {
        let scenario = try #require(try Catalogue.scenario(named: name)).adding(plugin: "kernel-mirror")
        var options = RunOptions()
        options.seed = testSeed
        options.operations = 4_000 * stressScale
        if scenario.pressure.oomKill != nil { options.operations = nil; options.seconds = 1.0 }
        let result = try ScenarioRunner.run(scenario, options: options)
        #expect(result.findings.isEmpty, "\(name) + kernel-mirror, seed \(testSeed): \(result.findings.prefix(5))")
        let mine = result.actors.filter { $0.name.hasPrefix("kernel-mirror on ") }
        #expect(!mine.isEmpty && mine.contains { $0.successes > 0 }, "\(name): the kernel mirror's device workloads did nothing: \(mine)")
    }
}
