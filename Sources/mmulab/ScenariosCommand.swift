import ArgumentParser
import ReclaimLab

struct ScenariosCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "scenarios",
        abstract: "Reclaim scenarios: list the built-in ones, show one's YAML, check files.",
        subcommands: [List.self, Show.self, Check.self]
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

    struct Show: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Print a built-in scenario's YAML: the starting point for one of your own.",
            discussion: "mmulab scenarios show reclaim-storm > my-storm.yaml; edit it; mmulab scenarios check my-storm.yaml")

        @Argument(help: "The name of a built-in scenario (mmulab scenarios list).")
        var name: String

        func run() throws {
            guard let entry = Catalogue.entries.first(where: { $0.name == name }) else {
                writeToStandardError("mmulab: no built-in scenario '\(name)' (built in: \(Catalogue.entries.map(\.name).joined(separator: ", ")))\n")
                throw ExitCode(2)
            }
            print(entry.yaml)
        }
    }

    struct Check: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Check scenarios as `mmulab run` would, running nothing: report the first mistake in each (file:line:column: field: message).",
            discussion: """
                Each scenario (a file, a built-in name, or - for standard input) is read, then set up as a \
                run sets it up: the machine built, every plugin loaded and created with its options, every \
                binding attached; then everything is torn down again. A plugin that does not exist or \
                does not load, options the plugin refuses, a binding it rejects (one that overlaps \
                another, say) are reported at their place in the file.

                Exit status: 0 every scenario would run, 2 one would not.
                """
        )

        @Argument(help: "Scenario files (YAML), names of built-in ones, or - for standard input.")
        var scenarios: [String]

        @Option(help: ArgumentHelp("Add a plugin to each scenario, as `run --plugin` does; repeatable.", valueName: "path"))
        var plugin: [String] = []

        @Option(help: "Options for the plugins --plugin adds (needs --plugin).")
        var pluginOptions: String?

        @Option(help: "Directory of the bundled plugins (default: beside mmulab).")
        var pluginDirectory: String?

        func validate() throws {
            guard !scenarios.isEmpty else { throw ValidationError("name at least one scenario (a file, a built-in name, or -)") }
            if pluginOptions != nil && plugin.isEmpty {
                throw ValidationError("--plugin-options applies to the plugins --plugin adds, and there is no --plugin")
            }
            if scenarios.filter({ $0 == "-" }).count > 1 { throw ValidationError("standard input (-) can be read once") }
        }

        func run() throws {
            var bad = 0
            for argument in scenarios {
                do {
                    var scenario = try ScenarioLookup.scenario(argument)
                    for added in plugin { scenario = try scenario.adding(plugin: added, options: pluginOptions ?? "") }
                    do {
                        try ScenarioRunner.check(scenario, pluginDirectory: pluginDirectory)
                    } catch {
                        throw ScenarioLookup.Failure(description: error.scenarioError(scenario).description)
                    }
                    print("ok        \(argument == "-" ? "<stdin>" : argument): \(describe(scenario))")
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
            case .seconds(let seconds): length = ReplayCommand.secondsText(seconds)
            }
            let plugins = scenario.plugins.map { "\($0.name) x\($0.instances)" }.joined(separator: ", ")
            return "'\(scenario.name)', \(scenario.spaces.count) address spaces, plugins [\(plugins)], "
                + "\(scenario.workloads.count) workloads, \(length), seed \(scenario.seed)"
        }
    }
}
