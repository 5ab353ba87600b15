#if canImport(Glibc)
import Glibc
#endif

/// How a child process ended.
enum Termination: Equatable, Sendable {
    /// It called exit with this status.
    case exited(Int32)
    /// A signal killed it (a crash, or our SIGKILL).
    case signaled(Int32)

    /// Decodes a `waitpid` status (the WIFEXITED/WTERMSIG macros are not imported).
    init(waitStatus status: Int32) {
        let signal = status & 0x7f
        self = signal == 0 ? .exited((status >> 8) & 0xff) : .signaled(signal)
    }
}

/// A child process started with `posix_spawn` as the leader of a process
/// group of its own, standard input from /dev/null, standard output and
/// error together into one file. Signals are reset to their defaults and
/// unblocked in the child, whatever the parent does with them.
///
/// Being a group leader, the child is out of reach of the terminal's Ctrl-C
/// (which goes to the foreground group): the parent is the one that must end
/// it, with `kill()`, which reaches every process in the group. The child is
/// reaped by `poll()` or `wait()`; after that `kill()` does nothing, so a
/// recycled process id is never signalled. Not thread-safe: one owner.
final class ChildProcess {
    struct SpawnError: Error, CustomStringConvertible {
        let description: String
    }

    let pid: pid_t
    /// How the child ended, once reaped.
    private(set) var termination: Termination?

    /// Starts `executable` with `arguments` (argv[0] is the executable's
    /// path) and the parent's environment, its output going to `outputPath`
    /// (created or truncated). Throws when the process could not be made.
    init(executable: String, arguments: [String], environment: [String], outputPath: String) throws(SpawnError) {
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
        posix_spawn_file_actions_addopen(&actions, 1, outputPath, O_WRONLY | O_CREAT | O_TRUNC, 0o644)
        posix_spawn_file_actions_adddup2(&actions, 1, 2)

        var attributes = posix_spawnattr_t()
        posix_spawnattr_init(&attributes)
        defer { posix_spawnattr_destroy(&attributes) }
        posix_spawnattr_setflags(&attributes, Int16(POSIX_SPAWN_SETPGROUP | POSIX_SPAWN_SETSIGDEF | POSIX_SPAWN_SETSIGMASK))
        posix_spawnattr_setpgroup(&attributes, 0)
        var defaults = sigset_t()
        sigemptyset(&defaults)
        for signal in [SIGINT, SIGTERM, SIGQUIT, SIGHUP, SIGPIPE, SIGCHLD] { sigaddset(&defaults, signal) }
        posix_spawnattr_setsigdefault(&attributes, &defaults)
        var unblocked = sigset_t()
        sigemptyset(&unblocked)
        posix_spawnattr_setsigmask(&attributes, &unblocked)

        let argv = ([executable] + arguments).map { strdup($0) } + [nil]
        let envp = environment.map { strdup($0) } + [nil]
        defer { (argv + envp).forEach { free($0) } }
        var child: pid_t = 0
        let status = posix_spawn(&child, executable, &actions, &attributes, argv, envp)
        guard status == 0 else {
            throw SpawnError(description: "cannot start \(executable): \(String(cString: strerror(status)))")
        }
        pid = child
    }

    /// How the child ended, if it has (reaping it); nil while it runs.
    func poll() -> Termination? {
        reap(options: WNOHANG)
        return termination
    }

    /// Waits for the child to end and reaps it.
    func wait() -> Termination {
        while termination == nil { reap(options: 0) }
        return termination!
    }

    /// SIGKILL to the child's whole process group (the child, its threads,
    /// anything it started). Nothing once the child has been reaped.
    func kill() {
        guard termination == nil else { return }
        _ = Glibc.kill(-pid, SIGKILL)
    }

    private func reap(options: Int32) {
        guard termination == nil else { return }
        var status: Int32 = 0
        let result = waitpid(pid, &status, options)
        if result == pid {
            termination = Termination(waitStatus: status)
        } else if result < 0 && errno != EINTR {
            termination = .exited(127)  // ECHILD: not ours to wait for any more; cannot happen with one owner
        }
    }
}

/// The real path of the running executable (`/proc/self/exe`).
func currentExecutablePath() -> String? {
    var buffer = [CChar](repeating: 0, count: Int(PATH_MAX) + 1)
    let length = readlink("/proc/self/exe", &buffer, Int(PATH_MAX))
    guard length > 0 else { return nil }
    return String(decoding: buffer[0..<length].map { UInt8(bitPattern: $0) }, as: UTF8.self)
}

/// This process's environment, as `NAME=value` strings.
func processEnvironment() -> [String] {
    let first: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>? = environ
    guard var cursor = first else { return [] }
    var result: [String] = []
    while let entry = cursor.pointee {
        result.append(String(cString: entry))
        cursor += 1
    }
    return result
}
