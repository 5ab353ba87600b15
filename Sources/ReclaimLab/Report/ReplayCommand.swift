public import VirtualMemory

/// A fault injection, by the name `mmulab run --inject` takes.
public enum Injection: String, Sendable, CaseIterable {
    case freeBeforeInvalidate = "free-before-invalidate"
    case skipRangeEnd = "skip-range-end"
    case skipYoungCheck = "skip-young-check"
    case dropSecondaryDirty = "drop-secondary-dirty"

    public var fault: MemoryFaultInjection {
        switch self {
        case .freeBeforeInvalidate: .freeBeforeInvalidate
        case .skipRangeEnd: .skipRangeEnd
        case .skipYoungCheck: .skipYoungCheck
        case .dropSecondaryDirty: .dropSecondaryDirty
        }
    }

    /// The injections in `faults`, in declaration order.
    public static func named(in faults: MemoryFaultInjection) -> [Injection] { allCases.filter { faults.contains($0.fault) } }
}

/// The command that reruns a run: the one source of every replay line the
/// terminal, the JSON and the HTML report print. The seed fixes every
/// random choice of the run; without `schedule` the threads still
/// interleave as the machine schedules them, with it the interleaving
/// replays too.
public struct ReplayCommand: Sendable, Equatable {
    /// The scenario as the user named it: a built-in name or a file path
    /// (`-`: the same YAML on standard input).
    public var scenario: String
    public var seed: UInt64
    /// `--duration` as seconds, if the run replaced the scenario's length.
    public var seconds: Double?
    public var injections: [Injection]
    /// Plugins added with `--plugin`, and the options they were given.
    public var plugins: [String]
    public var pluginOptions: String
    public var pluginDirectory: String?
    /// `--schedule`, the strategy of a deterministic run (`pct:3`).
    public var schedule: String? = nil
    /// `--schedule-file`, the choices (and strategy) a deterministic run
    /// followed; written instead of `--schedule`, which the file carries.
    public var scheduleFile: String? = nil
    /// `--stop-at-step`: where a deterministic run was cut.
    public var stopAtStep: UInt64? = nil
    /// `--kernel-hand-over`: the deterministic run gave each thread a kernel
    /// thread of its own (the same schedule; a plugin may need it).
    public var kernelHandOver = false

    public init(
        scenario: String, seed: UInt64, seconds: Double? = nil, injections: [Injection] = [], plugins: [String] = [], pluginOptions: String = "",
        pluginDirectory: String? = nil
    ) {
        self.scenario = scenario
        self.seed = seed
        self.seconds = seconds
        self.injections = injections
        self.plugins = plugins
        self.pluginOptions = pluginOptions
        self.pluginDirectory = pluginDirectory
    }

    /// The arguments after `mmulab`.
    public var arguments: [String] {
        var words = ["run", scenario, "--seed", "\(seed)"]
        if let seconds { words += ["--duration", Self.secondsText(seconds)] }
        if let pluginDirectory { words += ["--plugin-directory", pluginDirectory] }
        for injection in injections { words += ["--inject", injection.rawValue] }
        for plugin in plugins { words += ["--plugin", plugin] }
        if !pluginOptions.isEmpty { words += ["--plugin-options", pluginOptions] }
        if let scheduleFile {
            words += ["--schedule-file", scheduleFile]
        } else if let schedule {
            words += ["--schedule", schedule]
        }
        if kernelHandOver && (scheduleFile != nil || schedule != nil) { words += ["--kernel-hand-over"] }
        if let stopAtStep { words += ["--stop-at-step", "\(stopAtStep)"] }
        return words
    }

    /// The command as one shell line: `mmulab run reclaim-storm --seed 1 ...`.
    public var commandLine: String { (["mmulab"] + arguments).map(Self.quoted).joined(separator: " ") }

    /// `seconds` as short as it reads back exactly: `30s`, `2.5s`, `500ms`.
    public static func secondsText(_ seconds: Double) -> String {
        let milliseconds = (seconds * 1_000).rounded()
        if seconds < 1, milliseconds / 1_000 == seconds { return "\(Int(milliseconds))ms" }
        if seconds == seconds.rounded(), abs(seconds) < 1e15 { return "\(Int(seconds))s" }
        return "\(seconds)s"
    }

    /// `word` as one shell word: unchanged when it is plain, else single-quoted.
    public static func quoted(_ word: String) -> String {
        let plain = !word.isEmpty && word.unicodeScalars.allSatisfy { scalar in
            (scalar.value < 128 && (scalar.properties.isAlphabetic || ("0"..."9").contains(scalar))) || "_-./=:,+@%".unicodeScalars.contains(scalar)
        }
        guard plain else {
            var out = "'"
            for character in word { out += character == "'" ? "'\\''" : String(character) }
            return out + "'"
        }
        return word
    }
}
