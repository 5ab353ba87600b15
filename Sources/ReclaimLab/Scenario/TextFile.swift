#if canImport(Glibc)
import Glibc
#endif

/// Reads a small text file (a scenario) for a command line: only a regular
/// file is opened, so a FIFO never blocks the tool and a directory or a
/// loop of symbolic links is a one-line reason, not an error domain.
enum TextFile {
    /// The reason a file could not be read, in the tool's own words.
    struct Failure: Error, CustomStringConvertible {
        let description: String
    }

    /// Scenario files are small; anything larger is not one.
    static let maximumBytes = 4 << 20

    /// The UTF-8 text of the regular file at `path`.
    static func read(_ path: String) throws(Failure) -> String {
        var info = stat()
        guard stat(path, &info) == 0 else {
            let code = errno
            switch code {
            case ENOENT: throw Failure(description: "cannot read it: no such file")
            case ELOOP: throw Failure(description: "cannot read it: a loop of symbolic links")
            default: throw Failure(description: "cannot read it: \(String(cString: strerror(code)))")
            }
        }
        switch info.st_mode & S_IFMT {
        case S_IFREG: break
        case S_IFDIR: throw Failure(description: "cannot read it: a directory, not a scenario file")
        case S_IFIFO: throw Failure(description: "cannot read it: a FIFO, not a scenario file (use - to read standard input)")
        default: throw Failure(description: "cannot read it: not a regular file")
        }
        guard info.st_size <= maximumBytes else {
            throw Failure(description: "cannot read it: \(info.st_size) bytes is too large for a scenario file (at most \(maximumBytes))")
        }
        let descriptor = open(path, O_RDONLY | O_CLOEXEC)
        guard descriptor >= 0 else { throw Failure(description: "cannot read it: \(String(cString: strerror(errno)))") }
        defer { close(descriptor) }
        return try readAll(descriptor)
    }

    /// Everything on standard input, as text.
    static func readStandardInput() throws(Failure) -> String {
        try readAll(STDIN_FILENO)
    }

    private static func readAll(_ descriptor: Int32) throws(Failure) -> String {
        var bytes: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 65_536)
        while true {
            let count = chunk.withUnsafeMutableBytes { Glibc.read(descriptor, $0.baseAddress, $0.count) }
            if count < 0 {
                if errno == EINTR { continue }
                throw Failure(description: "cannot read it: \(String(cString: strerror(errno)))")
            }
            if count == 0 { break }
            bytes += chunk[0..<count]
            guard bytes.count <= maximumBytes else {
                throw Failure(description: "cannot read it: more than \(maximumBytes) bytes is too large for a scenario")
            }
        }
        guard let text = String(validating: bytes, as: UTF8.self) else { throw Failure(description: "not UTF-8 text") }
        return text
    }
}
