#if canImport(Glibc)
import Glibc
#endif

/// The real kernel is not usable here (not root, no /dev/kvm, no tracefs,
/// PFNs hidden...): the reason, as the runner gave it.
public struct KernelUnavailable: Error, Sendable, CustomStringConvertible {
    public let reason: String
    public var description: String { reason }
}

/// The kernel runner misbehaved (died, said something we do not understand).
public struct RunnerFailure: Error, Sendable, CustomStringConvertible {
    public let description: String
}

/// The real-kernel side of one script: a `mmulab-kernel-runner` process
/// (Sources/KernelRunner) driven over its standard input and output.
/// One per script: the script's process is the runner's subject, and it
/// exits with the script.
final class KernelSide {
    let facts: MachineFacts
    private let pid: pid_t
    private let input: Int32
    private let reader: LineReader
    private let zeroPFN: UInt64
    private var finished = false

    /// Starts the runner at `runnerPath` and reads its greeting.
    init(runnerPath: String) throws {
        signal(SIGPIPE, SIG_IGN)  // a runner that died must fail a write, not kill us
        guard access(runnerPath, X_OK) == 0 else {
            throw RunnerFailure(description: "no kernel runner at \(runnerPath) (it is built by `swift build`)")
        }
        var toRunner: [Int32] = [0, 0], fromRunner: [Int32] = [0, 0]
        guard pipe(&toRunner) == 0, pipe(&fromRunner) == 0 else { throw RunnerFailure(description: "pipe: \(errnoText())") }
        // Close-on-exec, so another child this process starts later does not
        // keep the runner's pipes open (dup2 onto 0 and 1 clears the flag
        // there). The runner closes whatever else it inherits (main.c).
        for fd in toRunner + fromRunner { _ = fcntl(fd, F_SETFD, FD_CLOEXEC) }
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_adddup2(&actions, toRunner[0], 0)
        posix_spawn_file_actions_adddup2(&actions, fromRunner[1], 1)
        for fd in toRunner + fromRunner { posix_spawn_file_actions_addclose(&actions, fd) }
        let argv: [UnsafeMutablePointer<CChar>?] = [strdup(runnerPath), nil]
        defer { argv.forEach { free($0) } }
        var child: pid_t = 0
        let status = posix_spawn(&child, runnerPath, &actions, nil, argv, environ)
        close(toRunner[0])
        close(fromRunner[1])
        guard status == 0 else {
            close(toRunner[1])
            close(fromRunner[0])
            throw RunnerFailure(description: "cannot start \(runnerPath): \(String(cString: strerror(status)))")
        }
        pid = child
        input = toRunner[1]
        reader = LineReader(fd: fromRunner[0])
        let greeting = try Self.block(reader, pid: child)
        guard let first = greeting.first else { throw RunnerFailure(description: "the kernel runner said nothing") }
        if first.hasPrefix("unavailable ") {
            Self.reap(child, input: input, reader: reader)
            finished = true
            throw KernelUnavailable(reason: String(first.dropFirst("unavailable ".count)))
        }
        let fields = Self.keyValues(first)
        guard first.hasPrefix("hello "), let kernel = fields["kernel"], let nodes = fields["nodes"].flatMap({ Int($0) }),
            let swap = fields["swap"].flatMap({ Int($0) }), let zero = fields["zero-pfn"].flatMap({ UInt64($0, radix: 16) })
        else { throw RunnerFailure(description: "the kernel runner's greeting is not understood: \(first)") }
        facts = MachineFacts(kernel: kernel, nodes: nodes, swapDevices: swap)
        zeroPFN = zero
    }

    deinit { finish() }

    /// Performs one primitive and returns its outcome.
    func perform(_ primitive: Primitive) throws -> Outcome {
        let reply = try exchange(primitive.line)
        guard let line = reply.first else { throw RunnerFailure(description: "no reply to `\(primitive.line)`") }
        if line == "ok" { return .ok }
        if line == "fault" { return .fault }
        if line.hasPrefix("value 0x"), let v = UInt32(line.dropFirst(8), radix: 16) { return .value(v) }
        if line.hasPrefix("error ") { return .error(String(line.dropFirst(6))) }
        throw RunnerFailure(description: "reply to `\(primitive.line)` not understood: \(line)")
    }

    /// Everything observed since the last snapshot, and the state now.
    func snapshot() throws -> SideSnapshot {
        var snap = SideSnapshot()
        for line in try exchange("snap") {
            let words = line.split(separator: " ").map(String.init)
            guard let verb = words.first else { continue }
            switch verb {
            case "inval", "age":
                guard words.count == 4, let start = UInt64(words[1], radix: 16), let end = UInt64(words[2], radix: 16) else {
                    throw RunnerFailure(description: "bad event line: \(line)")
                }
                let range = RawRange(start: start, end: end, cause: words[3])
                if verb == "inval" { snap.invalidations.append(range) } else { snap.agings.append(range) }
            case "layout":
                guard words.count == 4, let id = Int(words[1]), let start = UInt64(words[2], radix: 16), let pages = Int(words[3]) else {
                    throw RunnerFailure(description: "bad layout line: \(line)")
                }
                snap.layout[id] = Placement(start: start, pages: pages)
            case "pm", "cpm":
                guard words.count >= 2, let id = Int(words[1]) else { throw RunnerFailure(description: "bad pagemap line: \(line)") }
                let pages = try words.dropFirst(2).map { word -> RawPage in
                    guard let entry = UInt64(word, radix: 16) else { throw RunnerFailure(description: "bad pagemap entry: \(line)") }
                    return page(entry)
                }
                if verb == "pm" {
                    snap.pagemap[id] = pages
                } else {
                    snap.childPagemap = snap.childPagemap ?? [:]
                    snap.childPagemap![id] = pages
                }
            case "mc":
                guard words.count >= 2, let id = Int(words[1]) else { throw RunnerFailure(description: "bad mincore line: \(line)") }
                snap.resident[id] = words.dropFirst(2).map { $0 == "-" ? nil : $0 == "1" }
            default:
                throw RunnerFailure(description: "snapshot line not understood: \(line)")
            }
        }
        return snap
    }

    /// Decodes a pagemap entry (Documentation/admin-guide/mm/pagemap.rst):
    /// bit 63 present, 62 swapped, 56 exclusively mapped, 0-54 the PFN.
    private func page(_ entry: UInt64) -> RawPage {
        let present = entry >> 63 & 1 == 1
        let pfn = entry & (1 << 55 - 1)
        return RawPage(
            present: present, swapped: entry >> 62 & 1 == 1, exclusive: entry >> 56 & 1 == 1,
            frame: present ? pfn : nil, zeroPage: present && pfn == zeroPFN)
    }

    /// Ends the runner (which ends the script's process if it still runs).
    func finish() {
        guard !finished else { return }
        finished = true
        _ = "quit\n".withCString { write(input, $0, 5) }
        Self.reap(pid, input: input, reader: reader)
    }

    private func exchange(_ line: String) throws -> [String] {
        let text = line + "\n"
        let ok = text.withCString { pointer -> Bool in
            var offset = 0
            let count = strlen(pointer)
            while offset < count {
                let n = write(input, pointer + offset, count - offset)
                if n < 0 && errno == EINTR { continue }
                if n <= 0 { return false }
                offset += n
            }
            return true
        }
        guard ok else { throw RunnerFailure(description: "the kernel runner stopped reading (at `\(line)`)") }
        return try Self.block(reader, pid: pid)
    }

    /// Lines up to the "." that ends a reply.
    private static func block(_ reader: LineReader, pid: pid_t) throws -> [String] {
        var lines: [String] = []
        while let line = reader.next() {
            if line == "." { return lines }
            lines.append(line)
        }
        throw RunnerFailure(description: "the kernel runner (pid \(pid)) ended in the middle of a reply")
    }

    private static func reap(_ pid: pid_t, input: Int32, reader: LineReader) {
        close(input)
        while reader.next() != nil {}
        reader.close()
        var status: Int32 = 0
        while waitpid(pid, &status, 0) < 0 && errno == EINTR {}
    }

    private static func keyValues(_ line: String) -> [String: String] {
        var result: [String: String] = [:]
        for word in line.split(separator: " ") {
            let parts = word.split(separator: "=", maxSplits: 1)
            if parts.count == 2 { result[String(parts[0])] = String(parts[1]) }
        }
        return result
    }
}

/// Reads lines from a file descriptor, buffered.
final class LineReader {
    private let fd: Int32
    private var buffer: [UInt8] = []
    private var start = 0
    private var closed = false

    init(fd: Int32) { self.fd = fd }

    /// The next line without its newline; nil at end of file.
    func next() -> String? {
        while true {
            if let newline = buffer[start...].firstIndex(of: UInt8(ascii: "\n")) {
                let line = String(decoding: buffer[start..<newline], as: UTF8.self)
                start = newline + 1
                if start > 65_536 {
                    buffer.removeFirst(start)
                    start = 0
                }
                return line
            }
            var chunk = [UInt8](repeating: 0, count: 65_536)
            let n = closed ? 0 : read(fd, &chunk, chunk.count)
            if n < 0 && errno == EINTR { continue }
            if n <= 0 {
                guard start < buffer.count else { return nil }
                let line = String(decoding: buffer[start...], as: UTF8.self)
                start = buffer.count
                return line
            }
            buffer += chunk[0..<n]
        }
    }

    func close() {
        guard !closed else { return }
        closed = true
        _ = Glibc.close(fd)
    }
}

func errnoText() -> String { String(cString: strerror(errno)) }

/// The runner beside the running executable (mmulab, or the test bundle,
/// both in the build directory), unless `MMULAB_KERNEL_RUNNER` names one.
public func defaultRunnerPath() -> String {
    if let override = getenv("MMULAB_KERNEL_RUNNER"), override.pointee != 0 { return String(cString: override) }
    var buffer = [CChar](repeating: 0, count: Int(PATH_MAX) + 1)
    let length = readlink("/proc/self/exe", &buffer, Int(PATH_MAX))
    let executable = length > 0 ? String(decoding: buffer[0..<length].map { UInt8(bitPattern: $0) }, as: UTF8.self) : "."
    let directory = executable.split(separator: "/", omittingEmptySubsequences: false).dropLast().joined(separator: "/")
    return directory + "/mmulab-kernel-runner"
}
