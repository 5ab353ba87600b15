/// A schedule a run can take back (`mmulab run --schedule-file FILE`): the
/// strategy and the choices to follow before it (`ScheduleChoices`). Text,
/// one item a line, `#` starting a comment:
///
///     mmulab-schedule 1
///     strategy random:0.1
///     through 4210
///     # decision step thread site
///     17 12 3 0x0000010f00000000     # shader-0 preemption point -> churn
///     230 198 0                      # main
///
/// The first line names the format and its version. `strategy` is what
/// `--schedule` takes; `through` the last step the choices govern; then one
/// line per choice, by decision number (ascending), with the step it came
/// after, the index of the thread that runs next, and, optionally, the site
/// (`ScheduleSite`) it waits for (without one, it applies at its decision
/// wherever that is). Names in comments are for people; the numbers are
/// what count. The file does not say the scenario or the seed: it replays
/// only with the run it came from.
public struct ScheduleFile: Sendable, Hashable {
    public var strategy: ScheduleStrategy
    public var choices: ScheduleChoices

    public init(strategy: ScheduleStrategy, choices: ScheduleChoices) {
        self.strategy = strategy
        self.choices = choices
    }

    public static let header = "mmulab-schedule 1"

    /// A line of the file that is not what the format says.
    public struct ParseError: Error, Sendable, CustomStringConvertible {
        /// 1-based; 0 for the file as a whole.
        public let line: Int
        public let message: String
        public var description: String { line > 0 ? "line \(line): \(message)" : message }
    }

    /// Reads a schedule file's text; every malformed or out-of-order line is an error.
    public init(parsing text: String) throws(ParseError) {
        var sawHeader = false
        var strategy: ScheduleStrategy? = nil
        var through: UInt64? = nil
        var choices: [ScheduleChoice] = []
        for (offset, raw) in text.split(separator: "\n", omittingEmptySubsequences: false).enumerated() {
            let number = offset + 1
            let line = raw.split(separator: "#", maxSplits: 1, omittingEmptySubsequences: false).first ?? ""
            let words = line.split(whereSeparator: { $0 == " " || $0 == "\t" || $0 == "\r" }).map(String.init)
            guard let first = words.first else { continue }
            guard sawHeader else {
                guard words.joined(separator: " ") == Self.header else {
                    throw ParseError(line: number, message: "expected '\(Self.header)' (not a schedule file, or another version)")
                }
                sawHeader = true
                continue
            }
            switch first {
            case "strategy":
                guard strategy == nil else { throw ParseError(line: number, message: "a second 'strategy'") }
                guard words.count == 2, let parsed = ScheduleStrategy(parsing: words[1]) else {
                    throw ParseError(line: number, message: "'strategy' takes one of \(ScheduleStrategy.syntax)")
                }
                strategy = parsed
            case "through":
                guard through == nil else { throw ParseError(line: number, message: "a second 'through'") }
                guard words.count == 2, let parsed = UInt64(words[1]) else { throw ParseError(line: number, message: "'through' takes a step number") }
                through = parsed
            default:
                guard strategy != nil, let through else {
                    throw ParseError(line: number, message: "'strategy' and 'through' come before the choices")
                }
                guard words.count == 3 || words.count == 4, let decision = UInt64(words[0]), let step = UInt64(words[1]),
                    let thread = UInt32(words[2])
                else {
                    throw ParseError(line: number, message: "a choice is decision, step, thread and an optional site (got '\(line)')")
                }
                var site: ScheduleSite? = nil
                if words.count == 4 {
                    guard words[3].hasPrefix("0x"), let raw = UInt64(words[3].dropFirst(2), radix: 16) else {
                        throw ParseError(line: number, message: "a site is 0x and hex digits (got '\(words[3])')")
                    }
                    site = ScheduleSite(rawValue: raw)
                }
                guard decision >= 1 else { throw ParseError(line: number, message: "decisions are numbered from 1") }
                if let last = choices.last, last.decision >= decision {
                    throw ParseError(line: number, message: "decision \(decision) does not come after decision \(last.decision)")
                }
                guard step <= through else {
                    throw ParseError(line: number, message: "decision \(decision) is at step \(step), after 'through' (\(through))")
                }
                choices.append(ScheduleChoice(decision: decision, step: step, thread: thread, site: site))
            }
        }
        guard sawHeader else { throw ParseError(line: 0, message: "empty: expected '\(Self.header)'") }
        guard let strategy else { throw ParseError(line: 0, message: "no 'strategy' line") }
        guard let through else { throw ParseError(line: 0, message: "no 'through' line") }
        // Sorted and distinct by construction above.
        self.strategy = strategy
        self.choices = ScheduleChoices(choices, through: through)!
    }

    /// The file's text; `threadNames` (by index) go into comments (where
    /// each choice is made, and who runs), and `comments` (lines without
    /// their `#`) after the header.
    public func text(threadNames: [String] = [], comments: [String] = []) -> String {
        var lines = [Self.header]
        lines += comments.map { "# " + $0 }
        lines.append("strategy \(strategy)")
        lines.append("through \(choices.through)")
        if !choices.choices.isEmpty { lines.append("# decision step thread site") }
        // A name is one comment line's worth: no line breaks.
        func name(_ index: Int) -> String? {
            index < threadNames.count ? String(threadNames[index].map { $0.isNewline ? " " : $0 }) : nil
        }
        for choice in choices.choices {
            var line = "\(choice.decision) \(choice.step) \(choice.thread)"
            if let site = choice.site { line += " \(site)" }
            var said: [String] = []
            if let site = choice.site, let from = name(site.thread) {
                said.append("\(from) \(site.stopped ? "stopped after" : "at") \(site.kind.map { "\($0)" } ?? "?")")
            }
            if let to = name(Int(choice.thread)) { said.append("-> \(to)") }
            if !said.isEmpty { line += "  # " + said.joined(separator: " ") }
            lines.append(line)
        }
        return lines.joined(separator: "\n") + "\n"
    }
}
