#if canImport(Glibc)
import Glibc
#endif

/// What a run's log (its stdout and stderr) says about how it ended, for
/// the campaign's report. Reads at most a few kilobytes from each end of
/// the file, so a run that printed without end costs nothing.
enum RunLog {
    /// The lines worth keeping from the log at `path`. For a run that
    /// crashed with a Swift runtime backtrace in its log: the
    /// `Program crashed:` line, then the crashed thread's heading and first
    /// frames (the log's end is only registers). Otherwise, or when there is
    /// no such backtrace: the last `maxLines` non-empty lines. Empty when
    /// the log is empty or unreadable.
    static func excerpt(of path: String, crashed: Bool, maxLines: Int = 20) -> [String] {
        if crashed, let oops = oopsExcerpt(lines(of: path, fromEnd: true)) { return oops }
        if crashed, let backtrace = backtraceExcerpt(lines(of: path, fromEnd: false), maxLines: maxLines) { return backtrace }
        return Array(lines(of: path, fromEnd: true).suffix(maxLines))
    }

    /// The plugin oops a run printed (`mmulab oops` to its end), whole:
    /// it is the crash report. nil if there is none.
    static func oopsExcerpt(_ lines: [String]) -> [String]? {
        guard let start = lines.lastIndex(where: { $0.contains("==== mmulab oops ====") }) else { return nil }
        let rest = lines[start...]
        let end = rest.dropFirst().firstIndex { $0.hasPrefix("=====") } ?? rest.endIndex - 1
        return Array(lines[start...end])
    }

    /// The signal named by the oops in the log at `path` (`SIGSEGV`), if any.
    static func oopsSignal(in path: String) -> String? {
        guard let oops = oopsExcerpt(lines(of: path, fromEnd: true)),
            let line = oops.first(where: { $0.hasPrefix("BUG: ") }), let at = line.range(of: "SIG")
        else { return nil }
        return String(line[at.lowerBound...].prefix { $0.isLetter })
    }

    /// One line for the summary table: the BUG line of an oops, the crash
    /// and its thread for a backtrace excerpt, else the excerpt's last line.
    static func headline(_ excerpt: [String]) -> String? {
        if excerpt.first?.contains("mmulab oops") == true { return oopsHeadline(excerpt) }
        guard let first = excerpt.first, first.hasPrefix("Program crashed:") else { return excerpt.last }
        let thread = excerpt.dropFirst().first { $0.hasSuffix("crashed:") }.map { "; " + $0.dropLast() } ?? ""
        return first + thread
    }

    /// `plugin oops: SIGSEGV at NULL in dev#0 invalidate_range_start`:
    /// the signal and the innermost frame, without the plugin's path and the range.
    private static func oopsHeadline(_ oops: [String]) -> String {
        let bug = oops.first { $0.hasPrefix("BUG: ") } ?? ""
        var signal = bug.range(of: "SIG").map { String(bug[$0.lowerBound...].prefix { $0.isLetter }) } ?? "a signal"
        if bug.contains("NULL pointer") { signal += " at NULL" }
        guard var frame = oops.first(where: { $0.hasPrefix("  in ") }).map({ String($0.dropFirst(5)) }) else { return "plugin oops: \(signal)" }
        if let open = frame.range(of: " (plugin "), let close = frame[open.upperBound...].firstIndex(of: ")") {
            frame.removeSubrange(open.lowerBound...close)
        }
        if let comma = frame.firstIndex(of: ",") { frame = String(frame[..<comma]) }
        return "plugin oops: \(signal) in \(frame)"
    }

    private static func backtraceExcerpt(_ lines: [String], maxLines: Int) -> [String]? {
        guard let crash = lines.firstIndex(where: { $0.contains("Program crashed:") }) else { return nil }
        var text = lines[crash].trimmingStars()
        if let at = text.firstRange(of: " at 0x") { text = String(text[..<at.lowerBound]) }  // the fault address: noise in a summary
        var result = [text]
        if let thread = lines[crash...].firstIndex(where: { $0.hasPrefix("Thread ") && $0.hasSuffix("crashed:") }) {
            for line in lines[thread...].prefix(maxLines - 1) {
                if line.hasPrefix("Registers:") { break }
                result.append(line)
            }
        }
        return result
    }

    /// The non-blank lines of the first (or last) 16 KB of the file; a line
    /// cut at the window's edge is dropped.
    private static func lines(of path: String, fromEnd: Bool, window: Int = 16_384) -> [String] {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { return [] }
        defer { close(fd) }
        let size = Int(lseek(fd, 0, SEEK_END))
        guard size > 0 else { return [] }
        let start = fromEnd ? max(0, size - window) : 0
        var buffer = [UInt8](repeating: 0, count: min(window, size - start))
        let count = buffer.withUnsafeMutableBytes { pread(fd, $0.baseAddress, $0.count, off_t(start)) }
        guard count > 0 else { return [] }
        var lines = String(decoding: buffer[0..<count], as: UTF8.self).split(whereSeparator: \.isNewline).map(String.init)
        if fromEnd && start > 0 && !lines.isEmpty { lines.removeFirst() }
        if !fromEnd && start + count < size && !lines.isEmpty { lines.removeLast() }
        return lines.filter { !$0.allSatisfy(\.isWhitespace) }
    }
}

extension String {
    /// The text without the `*** ... ***` the Swift runtime frames its crash lines with.
    fileprivate func trimmingStars() -> String {
        var text = Substring(self)
        while text.first == "*" || text.first == " " { text.removeFirst() }
        while text.last == "*" || text.last == " " { text.removeLast() }
        return String(text)
    }
}
