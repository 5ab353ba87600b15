/// A script that cannot be run, with where and why: `file:line: message`.
public struct ScriptError: Error, Sendable, Hashable, CustomStringConvertible {
    public let path: String
    public let line: Int
    public let message: String

    public var description: String { "\(path):\(line): \(message)" }
}

/// Reads `.kdiff` scripts: one operation per line, `#` starts a comment.
///
///     map NAME anon|shared|file PAGES [rw|r|none]
///     read|guest-read|child-read NAME PAGES
///     write|guest-write|child-write NAME PAGES [VALUE]     (VALUE defaults to the step number)
///     munmap|dontneed|free|pageout|mergeable|migrate|wrprotect|wrunprotect|collapse NAME [PAGES]
///     mprotect NAME rw|r|none [PAGES]
///     mremap NAME
///     fork | child-exit | ksm | exit
///     watch NAME PAGES      (not a step: the guest reads these pages after every later step)
///
/// PAGES is `N`, `N-M` (inclusive) or `all`; VALUE is decimal or `0x` hex,
/// 32 bits. Everything is checked as it is read: names, page ranges, a
/// child only between `fork` and `child-exit`, nothing after `exit`.
public enum ScriptParser {
    /// Limits that keep a run small and inside the runner's tables.
    public static let maximumMappings = 16
    public static let maximumPages = 512  // a 2 MiB huge page (the runner's MAX_PAGES)

    /// Reads the script at `path`.
    public static func read(path: String) throws(ScriptError) -> Script {
        guard let text = readTextFile(path) else { throw ScriptError(path: path, line: 0, message: "cannot read the file") }
        return try parse(text, path: path)
    }

    /// Parses `text`; `path` names it in errors and gives the script its name.
    public static func parse(_ text: String, path: String) throws(ScriptError) -> Script {
        var state = ParseState(path: path)
        for (index, raw) in text.split(separator: "\n", omittingEmptySubsequences: false).enumerated() {
            let content = raw.split(separator: "#", maxSplits: 1, omittingEmptySubsequences: false).first.map(String.init) ?? ""
            let words = content.split(whereSeparator: { $0 == " " || $0 == "\t" || $0 == "\r" }).map(String.init)
            guard !words.isEmpty else { continue }
            try state.take(words, line: index + 1)
        }
        guard !state.steps.isEmpty else { throw ScriptError(path: path, line: 0, message: "the script has no operations") }
        return Script(name: scriptName(path), path: path, mappings: state.mappings, steps: state.steps)
    }

    /// "dir/fork-cow.kdiff" -> "fork-cow".
    static func scriptName(_ path: String) -> String {
        var name = path.split(separator: "/").last.map(String.init) ?? path
        if name.hasSuffix(".kdiff") { name.removeLast(6) }
        return name
    }
}

/// What the parser knows while it reads.
private struct ParseState {
    let path: String
    var mappings: [MappingDeclaration] = []
    var steps: [Step] = []
    var watched: [PageRange] = []
    var childAlive = false
    var exited = false
    var line = 0

    init(path: String) { self.path = path }

    func fail(_ message: String) -> ScriptError { ScriptError(path: path, line: line, message: message) }

    mutating func take(_ words: [String], line: Int) throws(ScriptError) {
        self.line = line
        let verb = words[0]
        if verb == "watch" {
            try arguments(words, 2...2, usage: "watch NAME PAGES")
            watched.append(try pages(words[1], words[2]))
            return
        }
        if exited { throw fail("nothing can follow `exit`") }
        let operation = try self.operation(verb, words)
        switch operation {
        case .fork:
            if childAlive { throw fail("`fork` while a child is still running (end it with `child-exit` first)") }
            childAlive = true
        case .childExit, .childRead, .childWrite:
            if !childAlive { throw fail("`\(verb)` needs a child: `fork` first") }
            if case .childExit = operation { childAlive = false }
        case .exit:
            if childAlive { throw fail("`exit` while a child is running: `child-exit` first") }
            exited = true
        default: break
        }
        let text = words.joined(separator: " ")
        steps.append(Step(number: steps.count + 1, line: line, text: text, operation: operation, watched: watched))
    }

    private func arguments(_ words: [String], _ allowed: ClosedRange<Int>, usage: String) throws(ScriptError) {
        guard allowed.contains(words.count - 1) else { throw fail("expected `\(usage)`") }
    }

    private mutating func operation(_ verb: String, _ words: [String]) throws(ScriptError) -> Operation {
        let value = UInt32(truncatingIfNeeded: steps.count + 1)
        switch verb {
        case "map":
            try arguments(words, 3...5, usage: "map NAME anon|shared|file PAGES [rw|r|none] [huge|unadvised]")
            return try map(words)
        case "read", "guest-read", "child-read":
            try arguments(words, 2...2, usage: "\(verb) NAME PAGES")
            let range = try pages(words[1], words[2])
            return verb == "read" ? .read(range) : verb == "guest-read" ? .guestRead(range) : .childRead(range)
        case "write", "guest-write", "child-write":
            try arguments(words, 2...3, usage: "\(verb) NAME PAGES [VALUE]")
            let range = try pages(words[1], words[2])
            let v = words.count == 4 ? try number(words[3]) : value
            return verb == "write" ? .write(range, v) : verb == "guest-write" ? .guestWrite(range, v) : .childWrite(range, v)
        case "munmap", "dontneed", "free", "pageout", "mergeable", "migrate", "wrprotect", "wrunprotect", "collapse":
            try arguments(words, 1...2, usage: "\(verb) NAME [PAGES]")
            let range = try pages(words[1], words.count == 3 ? words[2] : "all")
            switch verb {
            case "munmap": return .munmap(range)
            case "dontneed": return .dontNeed(range)
            case "free": return .free(range)
            case "wrprotect": return .writeProtect(range, protect: true)
            case "wrunprotect": return .writeProtect(range, protect: false)
            case "collapse": return .collapse(range)
            case "pageout": return .pageOut(range)
            case "mergeable": return .mergeable(range)
            default: return .migrate(range)
            }
        case "mprotect":
            try arguments(words, 2...3, usage: "mprotect NAME rw|r|none [PAGES]")
            let range = try pages(words[1], words.count == 4 ? words[3] : "all")
            return .mprotect(range, try protection(words[2]))
        case "mremap":
            try arguments(words, 1...1, usage: "mremap NAME")
            return .mremap(mapping: try mapping(words[1]).id)
        case "unregister":
            try arguments(words, 1...1, usage: "unregister NAME")
            return .unregister(mapping: try mapping(words[1]).id)
        case "fork", "child-exit", "ksm", "exit":
            try arguments(words, 0...0, usage: verb)
            return verb == "fork" ? .fork : verb == "child-exit" ? .childExit : verb == "ksm" ? .ksm : .exit
        default:
            throw fail("unknown operation `\(verb)`")
        }
    }

    private mutating func map(_ words: [String]) throws(ScriptError) -> Operation {
        let name = words[1]
        guard let first = name.unicodeScalars.first, first.properties.isLowercase,
            name.unicodeScalars.allSatisfy({ $0.properties.isLowercase || ("0"..."9").contains($0) || $0 == "-" || $0 == "_" })
        else { throw fail("a mapping name is lower-case letters, digits, - and _, starting with a letter: `\(name)`") }
        guard !mappings.contains(where: { $0.name == name }) else { throw fail("mapping `\(name)` is already made") }
        guard mappings.count < ScriptParser.maximumMappings else { throw fail("at most \(ScriptParser.maximumMappings) mappings") }
        guard let kind = MappingKind(rawValue: words[2]) else { throw fail("mapping kind is anon, shared or file, not `\(words[2])`") }
        guard let pages = Int(words[3]), (1...ScriptParser.maximumPages).contains(pages) else {
            throw fail("a mapping has 1 to \(ScriptParser.maximumPages) pages, not `\(words[3])`")
        }
        var rest = Array(words.dropFirst(4))
        var advice = HugePageAdvice.nohuge
        if let last = rest.last, let given = HugePageAdvice(rawValue: last), given != .nohuge {
            rest.removeLast()
            guard kind == .anon else { throw fail("huge-page advice is for anon mappings") }
            advice = given
        }
        guard rest.count <= 1 else { throw fail("usage: map NAME anon|shared|file PAGES [rw|r|none] [huge|unadvised]") }
        var prot = Protection.rw
        if let word = rest.first { prot = try protection(word) }
        let declaration = MappingDeclaration(id: mappings.count, name: name, kind: kind, pages: pages, advice: advice)
        mappings.append(declaration)
        return .map(declaration, prot)
    }

    private func mapping(_ name: String) throws(ScriptError) -> MappingDeclaration {
        guard let m = mappings.first(where: { $0.name == name }) else { throw fail("no mapping `\(name)` (make it with `map` first)") }
        return m
    }

    private func pages(_ name: String, _ spec: String) throws(ScriptError) -> PageRange {
        let m = try mapping(name)
        if spec == "all" { return PageRange(mapping: m.id, first: 0, count: m.pages) }
        let parts = spec.split(separator: "-", omittingEmptySubsequences: false).map(String.init)
        guard (1...2).contains(parts.count), let first = Int(parts[0]), let last = Int(parts.last!), first >= 0, last >= first else {
            throw fail("pages are N, N-M or all, not `\(spec)`")
        }
        guard last < m.pages else { throw fail("page \(last) is past the end of `\(name)` (\(m.pages) pages)") }
        return PageRange(mapping: m.id, first: first, count: last - first + 1)
    }

    private func protection(_ word: String) throws(ScriptError) -> Protection {
        guard let p = Protection(rawValue: word) else { throw fail("protection is rw, r or none, not `\(word)`") }
        return p
    }

    private func number(_ word: String) throws(ScriptError) -> UInt32 {
        let parsed = word.hasPrefix("0x") ? UInt32(word.dropFirst(2), radix: 16) : UInt32(word)
        guard let parsed else { throw fail("a value is a 32-bit number (decimal or 0x hex), not `\(word)`") }
        return parsed
    }
}
