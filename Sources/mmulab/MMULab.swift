import ArgumentParser

#if canImport(Glibc)
import Glibc
#endif

@main
struct MMULab: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "mmulab",
        abstract: "A user-space lab for secondary MMUs: find MMU-notifier races before the kernel does.",
        discussion: """
            Today the lab has its notifier core, the primary MMU model and the device \
            plugin ABI. `mmulab demo` storms the notifier core with mirror devices and \
            checks that no device keeps a stale translation; `mmulab plugins` lists and \
            inspects device plugins; `mmulab scenarios check` reads scenario files, \
            `mmulab run` runs one and `mmulab campaign` runs scenarios over many seeds, \
            each run a process of its own.

            Exit status: 0 clean, 1 violations found, 2 bad input (a bad flag included).
            """,
        subcommands: [DemoCommand.self, RunCommand.self, CampaignCommand.self, PluginsCommand.self, ScenariosCommand.self, EventsCommand.self],
        defaultSubcommand: DemoCommand.self
    )

    /// Parses and runs, mapping outcomes onto the documented exit statuses:
    /// 0 clean, 1 violations, 2 bad input (ArgumentParser's own default for
    /// a usage error is 64).
    static func main() {
        do {
            var command = try parseAsRoot()
            try command.run()
        } catch let code as ExitCode {
            Glibc.exit(code.rawValue)
        } catch {
            if exitCode(for: error) == .success { exit(withError: error) }  // --help, --version
            writeToStandardError(fullMessage(for: error) + "\n")
            Glibc.exit(2)
        }
    }
}

/// Writes `text` to file descriptor 2.
func writeToStandardError(_ text: String) {
    var text = text
    text.withUTF8 { bytes in _ = write(2, bytes.baseAddress, bytes.count) }
}
