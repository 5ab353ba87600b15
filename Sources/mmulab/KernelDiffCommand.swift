import ArgumentParser
import KernelDiff
import VirtualMemory

#if canImport(Glibc)
import Glibc
#endif

struct KernelDiffCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "kernel-diff",
        abstract: "Run operation scripts on this machine's Linux and in the model, and compare what a KVM guest sees.",
        discussion: """
            Each script (a .kdiff file, or every .kdiff in a directory) runs twice: in a real \
            process on the real kernel, with a KVM VM whose memslots cover its mappings \
            (mmulab-kernel-runner, beside mmulab; it needs root, /dev/kvm and tracefs), and in \
            the model with a KVM-like subscriber. After every step both sides report the pages \
            invalidated (kvm:kvm_unmap_hva_range), the aging calls (kvm:kvm_age_hva), the \
            pagemap of every page, mincore of shared and file pages, what each read (CPU, guest, \
            child) returned; the harness compares them and prints agree or differ per step, \
            with both sides' values, and the total.

            Differences listed in the known-differences file (default: `known-differences` \
            beside the first script) are expected, with their reason; rows that match no \
            difference any more are reported so they can be removed.

            Exit status: 0 every difference is a known one, 1 an unexpected difference, \
            2 bad input (a script or list that does not parse), 3 the real kernel cannot be \
            used here (the reason is printed).
            """
    )

    @Argument(help: ArgumentHelp("Script files (.kdiff), or directories of them.", valueName: "script"))
    var scripts: [String]

    @Option(help: ArgumentHelp("The known-differences list (default: known-differences beside the first script).", valueName: "file"))
    var known: String?

    @Flag(help: "Show every observable of every step, not only the differences.")
    var verbose = false

    @Option(help: ArgumentHelp("The kernel runner (default: mmulab-kernel-runner beside mmulab).", valueName: "path"))
    var runner: String?

    @Option(help: ArgumentHelp(
        "Break the model on purpose, to see the harness catch it: \(Injection.allCases.map(\.rawValue).joined(separator: ", ")); repeatable.",
        valueName: "fault"))
    var inject: [Injection] = []

    enum Injection: String, ExpressibleByArgument, CaseIterable {
        case skipMprotectInvalidation = "skip-mprotect-invalidation"

        var fault: MemoryFaultInjection {
            switch self {
            case .skipMprotectInvalidation: .skipMprotectInvalidation
            }
        }
    }

    func run() throws {
        var paths: [String] = []
        for argument in scripts {
            guard let found = scriptPaths(for: argument) else { return fail("\(argument): no such script file or directory") }
            if found.isEmpty { return fail("\(argument): no .kdiff scripts in this directory") }
            paths += found
        }
        var parsed: [Script] = []
        do {
            for path in paths { parsed.append(try ScriptParser.read(path: path)) }
        } catch {
            return fail(error.description)
        }
        let listPath = known ?? defaultKnownPath(beside: paths[0])
        var list = KnownDifferences()
        if let listPath {
            do {
                list = try KnownDifferences.read(path: listPath)
            } catch {
                return fail(error.description)
            }
        }
        let diff = KernelDiff(
            runnerPath: runner ?? defaultRunnerPath(), knownDifferences: list, faults: MemoryFaultInjection(inject.map(\.fault)))
        var results: [ScriptResult] = []
        for script in parsed {
            do {
                results.append(try diff.run(script))
            } catch let unavailable as KernelUnavailable {
                writeToStandardError("mmulab kernel-diff: skipped: the real kernel cannot be used here: \(unavailable.reason)\n")
                throw ExitCode(3)
            } catch {
                writeToStandardError("mmulab kernel-diff: \(script.path): \(error)\n")
                throw ExitCode(1)
            }
        }
        let stale = diff.staleRows(after: results)
        print(Report.render(results, stale: stale, reasons: list.reasons, verbose: verbose), terminator: "")
        if Totals(results).unexpected > 0 { throw ExitCode(1) }
    }

    private func fail(_ message: String) {
        writeToStandardError("mmulab kernel-diff: \(message)\n")
        Glibc.exit(2)
    }

    /// `known-differences` in the directory of the first script, if it exists.
    private func defaultKnownPath(beside path: String) -> String? {
        let directory = path.split(separator: "/", omittingEmptySubsequences: false).dropLast().joined(separator: "/")
        let candidate = (directory.isEmpty ? "." : directory) + "/known-differences"
        return access(candidate, R_OK) == 0 ? candidate : nil
    }
}
