import ArgumentParser
import ReclaimLab

struct ScenariosCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "scenarios",
        abstract: "Reclaim scenario files.",
        subcommands: [List.self, Check.self]
    )

    struct List: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "The built-in scenarios (run one with `mmulab run NAME`).")

        func run() throws {
            for entry in Catalogue.entries {
                let summary = (try? Catalogue.scenario(named: entry.name))??.summary ?? "(does not read: a bug)"
                print(entry.name.padded(to: 16) + summary)
            }
        }
    }

    struct Check: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Read scenario files and report the first mistake in each (file:line:column: field: message).",
            discussion: "Exit status: 0 every file is a valid scenario, 2 one is not."
        )

        @Argument(help: "Scenario files (YAML).")
        var files: [String]

        func run() throws {
            var bad = 0
            for file in files {
                do {
                    let scenario = try ScenarioReader.read(path: file)
                    print("ok        \(file): \(describe(scenario))")
                } catch {
                    bad += 1
                    writeToStandardError("mmulab: \(error)\n")
                }
            }
            if bad > 0 { throw ExitCode(2) }
        }

        private func describe(_ scenario: Scenario) -> String {
            let length: String
            switch scenario.length {
            case .operations(let count): length = "\(count) operations"
            case .seconds(let seconds): length = "\(seconds) s"
            }
            let plugins = scenario.plugins.map { "\($0.name) x\($0.instances)" }.joined(separator: ", ")
            return "'\(scenario.name)', \(scenario.spaces.count) address spaces, plugins [\(plugins)], "
                + "\(scenario.workloads.count) workloads, \(length), seed \(scenario.seed)"
        }
    }
}
