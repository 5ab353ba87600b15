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
            `mmulab demo` stress-runs the reclaim-storm scenario against the bundled GPU, RDMA \
            and KVM plugins. `mmulab run` runs any scenario (built in, or your YAML file) \
            against any plugin; `mmulab campaign` runs many seeds in child processes or on a \
            Slurm cluster; `mmulab bugs` lists the bugs campaigns found; \
            `mmulab replay` steps through a deterministic run's failure and `mmulab shrink` cuts it down; \
            `mmulab scenarios` lists and checks scenarios; `mmulab plugins` lists and inspects \
            device plugins; `mmulab events` lists the invalidation events; \
            `mmulab notifier-storm` storms the notifier core alone; `mmulab kernel-diff` checks \
            the model against this machine's Linux.

            Exit status: 0 clean (or SKIP: a run that checked no read), 1 violations found, 2 bad \
            input (a bad flag included).
            """,
        version: Version.text,
        subcommands: [
            DemoCommand.self, RunCommand.self, CampaignCommand.self, ReplayRunCommand.self, ShrinkCommand.self, ScenariosCommand.self, PluginsCommand.self,
            EventsCommand.self, NotifierStormCommand.self, KernelDiffCommand.self, BugsCommand.self,
        ],
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
    writeText(text, to: STDERR_FILENO)
}

/// Writes all of `text` to `descriptor` (after what `print` buffered).
func writeText(_ text: String, to descriptor: Int32) {
    fflush(nil)
    var text = text
    text.withUTF8 { bytes in
        var offset = 0
        while offset < bytes.count {
            let written = write(descriptor, bytes.baseAddress! + offset, bytes.count - offset)
            if written < 0 && errno == EINTR { continue }
            if written <= 0 { return }
            offset += written
        }
    }
}
