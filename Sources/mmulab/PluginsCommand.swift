import ArgumentParser
import PluginHost
import VirtualMemory

struct PluginsCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "plugins",
        abstract: "List and inspect device plugins.",
        subcommands: [List.self, Inspect.self],
        defaultSubcommand: List.self
    )

    struct List: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "List the plugins found and whether each loads.",
            discussion: """
                Plugins come from --plugin paths, the directories in \(PluginDiscovery.environmentVariable) \
                (colon-separated; ignored for setuid processes) and the bundled ones beside the mmulab \
                executable; directories contribute files named \(PluginDiscovery.filePrefix)*\(PluginDiscovery.fileSuffix).
                """
        )

        @Option(name: .customLong("plugin"), help: "A plugin shared object to include (repeatable).")
        var plugins: [String] = []

        func run() throws {
            let candidates = PluginDiscovery(explicitPaths: plugins).candidates()
            if candidates.isEmpty {
                print("No plugins found. Pass --plugin PATH or set \(PluginDiscovery.environmentVariable).")
                return
            }
            var rejected = 0
            for path in candidates {
                switch PluginLoader.load(path) {
                case .success(let plugin):
                    let caps = plugin.capabilityNames.isEmpty ? "" : "  [" + plugin.capabilityNames.joined(separator: ", ") + "]"
                    print("ok        \(plugin.name) \(plugin.version) (ABI 1.\(plugin.minor))\(caps)")
                    print("          \(plugin.path)")
                case .failure(let error):
                    rejected += 1
                    print("rejected  \(error)")
                }
            }
            if rejected > 0 && !plugins.isEmpty { throw ExitCode(2) }
        }
    }

    struct Inspect: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Load one plugin, check it against the ABI, create an instance and describe it.",
            discussion: "Exit status: 0 the plugin is usable, 2 it was rejected (the reason is printed)."
        )

        @Argument(help: "Path to the plugin shared object.")
        var path: String

        @Option(help: "Options string passed to the plugin's create.")
        var options: String = ""

        func run() throws {
            let plugin: LoadedPlugin
            switch PluginLoader.load(path) {
            case .success(let loaded): plugin = loaded
            case .failure(let error):
                writeToStandardError("mmulab: rejected: \(error)\n")
                throw ExitCode(2)
            }
            var rows: [(String, String)] = [
                ("name", plugin.name), ("version", plugin.version), ("path", plugin.path),
                ("ABI", "1.\(plugin.minor) (host supports 1.\(PluginLoader.hostMinor))"),
                ("capabilities", plugin.capabilityNames.isEmpty ? "none" : plugin.capabilityNames.joined(separator: ", ")),
                ("optional operations", plugin.optionalOperations.isEmpty ? "none" : plugin.optionalOperations.joined(separator: ", ")),
            ]
            if !plugin.summary.isEmpty { rows.insert(("description", plugin.summary), at: 2) }
            let machine = Machine(.init(memory: .init(frames: 256, payloadSize: 16), swapSlots: 256))
            switch PluginInstance.create(plugin, machine: machine, options: options) {
            case .success(let instance):
                let counters = instance.statistics().map(\.name)
                rows.append(("create", "ok"))
                rows.append(("counters", counters.isEmpty ? "none" : counters.joined(separator: ", ")))
                instance.destroy()
            case .failure(let error):
                writeToStandardError("mmulab: rejected: \(error)\n")
                throw ExitCode(2)
            }
            let width = rows.map(\.0.count).max() ?? 0
            for (key, value) in rows { print(key.padded(to: width) + "  " + value) }
        }
    }
}
