import Foundation
import Testing

@testable import ReclaimLab

/// Where a report may go: only a regular file is ever replaced, and only
/// by a rename of a complete temporary file beside it; everything else is
/// refused before a run with one line naming the option and the path.
@Suite("report destinations")
struct ReportDestinationTests {
    /// A directory of the test's own.
    final class Scratch {
        let path: String
        init() throws {
            path = FileManager.default.temporaryDirectory.appendingPathComponent("mmulab-dest-\(UUID().uuidString)").path
            try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
        }
        deinit { try? FileManager.default.removeItem(atPath: path) }
        func file(_ name: String) -> String { path + "/" + name }
        var entries: [String] { ((try? FileManager.default.contentsOfDirectory(atPath: path)) ?? []).sorted() }
    }

    /// The message `checked` gives for `path`, or nil if it accepts it.
    func refusal(_ path: String) -> String? {
        do {
            _ = try ReportDestination.checked(path, option: "--json")
            return nil
        } catch {
            return error.description
        }
    }

    @Test("a directory is refused and left as it was")
    func directory() throws {
        let scratch = try Scratch()
        try FileManager.default.createDirectory(atPath: scratch.file("d"), withIntermediateDirectories: false)
        try "keep".write(toFile: scratch.file("d/keep"), atomically: false, encoding: .utf8)
        let message = try #require(refusal(scratch.file("d")))
        #expect(message.contains("--json \(scratch.file("d")): a directory"), "\(message)")
        #expect(try String(contentsOfFile: scratch.file("d/keep"), encoding: .utf8) == "keep")
        #expect(scratch.entries == ["d"], "the check left something behind: \(scratch.entries)")
    }

    @Test("a FIFO, a symbolic link loop, a dangling link, an empty path and a trailing slash are refused")
    func notRegularFiles() throws {
        let scratch = try Scratch()
        #expect(mkfifo(scratch.file("fifo"), 0o644) == 0)
        try FileManager.default.createSymbolicLink(atPath: scratch.file("a"), withDestinationPath: scratch.file("b"))
        try FileManager.default.createSymbolicLink(atPath: scratch.file("b"), withDestinationPath: scratch.file("a"))
        try FileManager.default.createSymbolicLink(atPath: scratch.file("dangling"), withDestinationPath: scratch.file("nothing"))
        #expect(refusal(scratch.file("fifo"))?.contains("a FIFO") == true)
        #expect(refusal(scratch.file("a"))?.contains("a loop of symbolic links") == true)
        #expect(refusal(scratch.file("dangling"))?.contains("a symbolic link to nothing") == true)
        #expect(refusal("")?.contains("an empty path") == true)
        #expect(refusal(scratch.path + "/")?.contains("names a directory") == true)
        #expect(refusal(scratch.file("missing/x.json"))?.contains("does not exist") == true)
        #expect(scratch.entries == ["a", "b", "dangling", "fifo"])
    }

    @Test("kernel filesystems and device nodes are refused")
    func kernelFiles() throws {
        #expect(refusal("/proc/version")?.contains("kernel filesystem") == true, "\(refusal("/proc/version") ?? "accepted")")
        #expect(refusal("/sys/kernel/mmulab.json")?.contains("kernel filesystem") == true)
        #expect(refusal("/dev/null")?.contains("a character device") == true)
        #expect(refusal("/dev/full")?.contains("a character device") == true)
    }

    @Test("a device node made for the test is refused and survives (as root)")
    func ownDeviceNode() throws {
        guard getuid() == 0 else { return }  // mknod needs root; /dev/null above covers the rest
        let scratch = try Scratch()
        #expect(mknod(scratch.file("null"), S_IFCHR | 0o666, (1 << 8) | 3) == 0)
        #expect(refusal(scratch.file("null"))?.contains("a character device") == true)
        var info = stat()
        #expect(lstat(scratch.file("null"), &info) == 0 && info.st_mode & S_IFMT == S_IFCHR)
    }

    @Test("a regular file is replaced whole, keeps its mode, and nothing else is left")
    func replacesRegularFile() throws {
        let scratch = try Scratch()
        let path = scratch.file("report.json")
        try "old".write(toFile: path, atomically: false, encoding: .utf8)
        #expect(chmod(path, 0o640) == 0)
        let destination = try ReportDestination.checked(path, option: "--json")
        try destination.write("new\n")
        #expect(try String(contentsOfFile: path, encoding: .utf8) == "new\n")
        var info = stat()
        #expect(stat(path, &info) == 0 && info.st_mode & 0o777 == 0o640)
        #expect(scratch.entries == ["report.json"])
    }

    @Test("a symbolic link to a regular file: the file is replaced, the link stays")
    func followsLink() throws {
        let scratch = try Scratch()
        try "old".write(toFile: scratch.file("real.json"), atomically: false, encoding: .utf8)
        try FileManager.default.createSymbolicLink(atPath: scratch.file("link.json"), withDestinationPath: "real.json")
        try ReportDestination.checked(scratch.file("link.json"), option: "--json").write("new")
        #expect(try String(contentsOfFile: scratch.file("real.json"), encoding: .utf8) == "new")
        #expect(try FileManager.default.destinationOfSymbolicLink(atPath: scratch.file("link.json")) == "real.json")
    }

    @Test("a target that became a directory after the check is left alone")
    func targetChangedAfterCheck() throws {
        let scratch = try Scratch()
        let path = scratch.file("late")
        let destination = try ReportDestination.checked(path, option: "--json")
        try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: false)
        #expect(throws: ReportDestination.Failure.self) { try destination.write("text") }
        var isDirectory: ObjCBool = false
        #expect(FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory) && isDirectory.boolValue)
        #expect(scratch.entries == ["late"], "a temporary file was left: \(scratch.entries)")
    }

    @Test("- and /dev/stdout are standard output; /dev/fd/N must be open")
    func descriptors() throws {
        #expect(try ReportDestination.checked("-", option: "--json").isStandardOutput)
        #expect(try ReportDestination.checked("/dev/stdout", option: "--json").isStandardOutput)
        #expect(try ReportDestination.checked("/dev/stderr", option: "--json").target == .descriptor(2))
        #expect(refusal("/dev/fd/987")?.contains("not open") == true)
    }

    @Test("the directory part of a path", arguments: [("x", "."), ("a/b", "a"), ("/x", "/"), ("/a/b/c", "/a/b"), ("./r", ".")])
    func directoryPart(path: String, directory: String) {
        #expect(ReportDestination.directoryPart(of: path) == directory)
    }
}
