#if canImport(Glibc)
import Glibc
#endif

/// A single status line rewritten in place on a terminal, never wider than
/// the terminal (a wrapped line would leave a line per update); silent when
/// its descriptor is not a terminal.
final class ProgressLine {
    private let descriptor: Int32
    private let enabled: Bool
    private var shown = false

    /// A line on `descriptor` (standard output unless that carries a report).
    init(descriptor: Int32 = STDOUT_FILENO) {
        self.descriptor = descriptor
        enabled = isatty(descriptor) != 0
    }

    /// The terminal's width in columns (80 when it does not say).
    private var columns: Int {
        var size = winsize()
        guard ioctl(descriptor, UInt(TIOCGWINSZ), &size) == 0, size.ws_col > 0 else { return 80 }
        return Int(size.ws_col)
    }

    func update(_ text: String) {
        guard enabled else { return }
        // One column short of the width: a line that fills the last column
        // wraps on some terminals. `\r` then clear-to-end-of-line (`ESC [K`).
        let width = max(columns - 1, 10)
        let line = text.count <= width ? text : String(text.prefix(width - 1)) + "…"
        emit("\r" + line + "\u{1B}[K")
        shown = true
    }

    func finish() {
        guard enabled, shown else { return }
        emit("\r\u{1B}[K")
        shown = false
    }

    private func emit(_ text: String) {
        fflush(nil)
        var text = text
        text.withUTF8 { bytes in _ = write(descriptor, bytes.baseAddress, bytes.count) }
    }
}
