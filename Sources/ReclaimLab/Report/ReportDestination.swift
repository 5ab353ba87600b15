#if canImport(Glibc)
import Glibc
#endif

/// Where a report goes: standard output (`-`), or a regular file that is
/// replaced whole, never edited in place and never anything but a regular
/// file.
///
/// Guarantees:
/// - `checked(_:option:)` is called before a run and refuses, with one line
///   in the tool's own words, every path a report could not be written to
///   (empty, a directory, a device node, a FIFO, a socket, a symbolic link
///   loop, a directory that does not exist or takes no new files, a kernel
///   filesystem such as /proc or /sys). Nothing is created or removed by
///   the check but a probe file it makes and unlinks beside the target.
/// - `write(_:)` writes a temporary file in the target's directory, flushes
///   it to disk and `rename(2)`s it over the target: a reader sees the old
///   report or the new one, never half of one, and a target that became
///   something other than a regular file meanwhile is left alone.
/// - A symbolic link to a regular file is followed: the file it names is
///   replaced and the link stays.
public struct ReportDestination: Sendable, Hashable, CustomStringConvertible {
    /// Why a report cannot go where it was asked to; `description` is the
    /// message, naming the option and the path.
    public struct Failure: Error, Sendable, CustomStringConvertible {
        public let description: String
    }

    public enum Target: Sendable, Hashable {
        case standardOutput
        /// An open descriptor named by path (`/dev/stderr`, `/dev/fd/3`):
        /// written to, never replaced.
        case descriptor(Int32)
        /// The file to replace (symbolic links resolved) and the directory
        /// that holds it.
        case file(path: String, directory: String)
    }

    /// What the user typed, for messages.
    public let argument: String
    public let target: Target

    public var description: String { argument }

    /// Whether this is `-`.
    public var isStandardOutput: Bool { target == .standardOutput }

    /// The destination `argument` names, checked as the type's guarantees
    /// say. `option` (`--json`) prefixes every message.
    public static func checked(_ argument: String, option: String) throws(Failure) -> ReportDestination {
        func failure(_ why: String) -> Failure { Failure(description: "\(option) \(argument.isEmpty ? "''" : argument): \(why)") }
        if argument == "-" { return ReportDestination(argument: argument, target: .standardOutput) }
        if let descriptor = namedDescriptor(argument) {
            // /dev/stdout and its kin are the process's own descriptors: a
            // rename would replace whatever they lead to (a terminal's
            // device node, or the file the shell redirected into).
            guard fcntl(descriptor, F_GETFD) >= 0 else { throw failure("descriptor \(descriptor) is not open") }
            return ReportDestination(argument: argument, target: descriptor == STDOUT_FILENO ? .standardOutput : .descriptor(descriptor))
        }
        guard !argument.isEmpty else { throw failure("an empty path; give a file name, or - for standard output") }
        guard !argument.hasSuffix("/") else { throw failure("names a directory; give a file name") }
        var path = argument
        var info = stat()
        if lstat(path, &info) == 0 {
            if info.st_mode & S_IFMT == S_IFLNK {
                // Follow the link to what it names, so the rename replaces
                // that file and the link stays a link.
                guard stat(path, &info) == 0 else { throw failure(linkProblem(errno)) }
                guard let resolved = realpath(path, nil) else { throw failure(linkProblem(errno)) }
                path = String(cString: resolved)
                free(resolved)
            }
            guard info.st_mode & S_IFMT == S_IFREG else { throw failure("\(kind(of: info.st_mode)); a report replaces only a regular file") }
        } else if errno != ENOENT {
            throw failure(errno == ELOOP ? linkProblem(ELOOP) : "cannot look at it (\(errorText(errno)))")
        }
        let directory = directoryPart(of: path)
        guard stat(directory, &info) == 0 else {
            throw failure(errno == ENOENT ? "the directory \(directory) does not exist" : "cannot look at \(directory) (\(errorText(errno)))")
        }
        guard info.st_mode & S_IFMT == S_IFDIR else { throw failure("\(directory) is not a directory") }
        if let name = kernelFilesystemName(directory) {
            throw failure("\(directory) is on \(name), a kernel filesystem; reports go to ordinary files")
        }
        // The probe: the same temporary file `write` makes, made and removed.
        let probe: (descriptor: Int32, path: String)
        do {
            probe = try temporaryFile(in: directory, for: path)
        } catch {
            throw failure("cannot create a file in \(directory) (\(errorText(error.code)))")
        }
        close(probe.descriptor)
        unlink(probe.path)
        return ReportDestination(argument: argument, target: .file(path: path, directory: directory))
    }

    /// Writes `text` as the type's guarantees say. Throws a one-line reason.
    public func write(_ text: String) throws(Failure) {
        func failure(_ why: String) -> Failure { Failure(description: "could not write \(argument): \(why)") }
        switch target {
        case .standardOutput:
            guard Self.writeAll(text, to: STDOUT_FILENO) else { throw failure("standard output: \(Self.errorText(errno))") }
        case .descriptor(let descriptor):
            guard Self.writeAll(text, to: descriptor) else { throw failure(Self.errorText(errno)) }
        case .file(let path, let directory):
            let temporary: (descriptor: Int32, path: String)
            do {
                temporary = try Self.temporaryFile(in: directory, for: path)
            } catch {
                throw failure("cannot create a file in \(directory) (\(Self.errorText(error.code)))")
            }
            var info = stat()
            let exists = lstat(path, &info) == 0
            // A new report gets the usual mode (0666 less the umask); a
            // replaced one keeps the mode it had.
            let mode: mode_t
            if exists {
                mode = info.st_mode & 0o7777
            } else {
                let mask = umask(0)
                umask(mask)
                mode = 0o666 & ~mask
            }
            var problem: String? = nil
            if !Self.writeAll(text, to: temporary.descriptor) {
                problem = Self.errorText(errno)
            } else if fchmod(temporary.descriptor, mode) != 0 || fsync(temporary.descriptor) != 0 {
                problem = Self.errorText(errno)
            }
            if close(temporary.descriptor) != 0 && problem == nil { problem = Self.errorText(errno) }
            // Checked again just before the rename: something else may have
            // taken the name since the run began.
            if problem == nil, exists, info.st_mode & S_IFMT != S_IFREG {
                problem = "it is now \(Self.kind(of: info.st_mode)), which a report does not replace"
            }
            if problem == nil, rename(temporary.path, path) != 0 { problem = Self.errorText(errno) }
            if let problem {
                unlink(temporary.path)
                throw failure(problem)
            }
        }
    }

    // MARK: - One system call each

    /// A new file `.NAME.XXXXXX` beside `path` in `directory`, open for
    /// writing (`mkstemp`).
    private static func temporaryFile(in directory: String, for path: String) throws(SystemError) -> (descriptor: Int32, path: String) {
        let name = path.split(separator: "/").last.map(String.init) ?? "report"
        let prefix = (directory == "/" ? "/" : directory + "/") + ".\(name)."
        var template = Array((prefix + "XXXXXX").utf8CString)
        let descriptor = template.withUnsafeMutableBufferPointer { mkstemp($0.baseAddress!) }
        guard descriptor >= 0 else { throw SystemError(code: errno) }
        return (descriptor, String(decoding: template.dropLast().map { UInt8(bitPattern: $0) }, as: UTF8.self))
    }

    /// Writes every byte of `text` to `descriptor`, retrying short writes
    /// and interruptions. False on an error (`errno` says which).
    private static func writeAll(_ text: String, to descriptor: Int32) -> Bool {
        var text = text
        return text.withUTF8 { bytes -> Bool in
            var offset = 0
            while offset < bytes.count {
                let written = Glibc.write(descriptor, bytes.baseAddress! + offset, bytes.count - offset)
                if written < 0 {
                    if errno == EINTR { continue }
                    return false
                }
                offset += written
            }
            return true
        }
    }

    /// The descriptor a path such as `/dev/stdout`, `/dev/fd/2` or
    /// `/proc/self/fd/3` names, if it names one.
    static func namedDescriptor(_ path: String) -> Int32? {
        switch path {
        case "/dev/stdin": return STDIN_FILENO
        case "/dev/stdout": return STDOUT_FILENO
        case "/dev/stderr": return STDERR_FILENO
        default: break
        }
        for prefix in ["/dev/fd/", "/proc/self/fd/"] where path.hasPrefix(prefix) {
            return Int32(path.dropFirst(prefix.count))
        }
        return nil
    }

    /// The directory part of `path`: `.` for a bare name, `/` for a file at the root.
    static func directoryPart(of path: String) -> String {
        guard let slash = path.lastIndex(of: "/") else { return "." }
        let head = path[..<slash]
        return head.isEmpty ? "/" : String(head)
    }

    /// The kernel filesystem (proc, sysfs, ...) `directory` is on, if it is
    /// one: the type of the longest mount point in /proc/self/mounts that
    /// holds the directory (symbolic links resolved).
    private static func kernelFilesystemName(_ directory: String) -> String? {
        let kernelTypes: Set<String> = ["proc", "sysfs", "debugfs", "tracefs", "cgroup", "cgroup2", "devpts", "securityfs", "configfs", "bpf"]
        guard let resolved = realpath(directory, nil) else { return nil }
        let path = String(cString: resolved)
        free(resolved)
        guard let mounts = try? TextFile.read("/proc/self/mounts") else { return nil }
        var best: (point: String, type: String)? = nil
        for line in mounts.split(separator: "\n") {
            let fields = line.split(separator: " ")
            guard fields.count >= 3 else { continue }
            let point = String(fields[1])
            let holds = point == "/" || path == point || path.hasPrefix(point + "/")
            if holds && point.count >= (best?.point.count ?? -1) { best = (point, String(fields[2])) }
        }
        guard let best, kernelTypes.contains(best.type) else { return nil }
        return best.type
    }

    private static func kind(of mode: mode_t) -> String {
        switch mode & S_IFMT {
        case S_IFDIR: "a directory"
        case S_IFCHR: "a character device"
        case S_IFBLK: "a block device"
        case S_IFIFO: "a FIFO"
        case S_IFSOCK: "a socket"
        case S_IFLNK: "a symbolic link"
        default: "not a regular file"
        }
    }

    private static func linkProblem(_ code: Int32) -> String {
        code == ELOOP ? "a loop of symbolic links" : code == ENOENT ? "a symbolic link to nothing" : "a symbolic link that cannot be followed (\(errorText(code)))"
    }

    static func errorText(_ code: Int32) -> String { String(cString: strerror(code)) }

    struct SystemError: Error { let code: Int32 }
}
