import Foundation
import Testing

/// The HTML report in a real browser: headless Chromium (Debian's
/// `chromium`, which scripts/test installs when run as root) loads the
/// report of a run with findings and of a clean run; the page must render,
/// and the browser's DOM must hold the bug list (one item per bug of the
/// run's JSON), the totals per invariant, the charts and the replay
/// command. Without Chromium the test fails, saying so: a report nobody
/// looked at in a browser is not checked.
@Suite("HTML report in a browser")
struct BrowserReportTests {
    /// Chromium on the PATH, if installed.
    static var chromium: String? {
        let path = ProcessInfo.processInfo.environment["PATH"] ?? "/usr/bin:/bin"
        for directory in path.split(separator: ":") + ["/usr/bin", "/usr/local/bin"] {
            for name in ["chromium", "chromium-browser"] where FileManager.default.isExecutableFile(atPath: "\(directory)/\(name)") {
                return "\(directory)/\(name)"
            }
        }
        return nil
    }

    /// Runs the browser headless on `page` with `arguments`; its exit status and standard output.
    static func browse(_ browser: String, _ arguments: [String], page: String, sandbox: Sandbox) throws -> (status: Int32, output: String) {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: browser)
        process.arguments = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--user-data-dir=\(sandbox.path("profile"))"]
            + arguments + ["file://\(page)"]
        let output = sandbox.path("browser-\(UUID().uuidString).out")
        FileManager.default.createFile(atPath: output, contents: nil)
        process.standardOutput = FileHandle(forWritingAtPath: output)
        process.standardError = FileHandle.nullDevice
        process.standardInput = FileHandle.nullDevice
        try process.run()
        let deadline = Date().addingTimeInterval(120)
        while process.isRunning && Date() < deadline { usleep(20_000) }
        if process.isRunning {
            process.terminate()
            Issue.record("\(browser) did not finish with \(page) within 120 s")
        }
        process.waitUntilExit()
        return (process.terminationStatus, (try? String(contentsOfFile: output, encoding: .utf8)) ?? "")
    }

    @Test("the report of a run with findings and of a clean run render in headless Chromium, with the bug list")
    func reportsRenderInChromium() throws {
        let browser = try #require(
            Self.chromium,
            "chromium is not installed, so the HTML report cannot be checked in a browser: scripts/test installs it when run as root (apt-get install chromium)")
        let sandbox = try Sandbox()
        let broken = sandbox.path("findings.html")
        let brokenJSON = sandbox.path("findings.json")
        let clean = sandbox.path("clean.html")
        let failed = try sandbox.mmulab([
            "run", "munmap-race", "--duration", "500ms", "--inject", "skip-range-end", "--plugin-directory", buildDirectory, "--report", broken,
            "--json", brokenJSON,
        ])
        #expect(failed.status == 1, "\(failed.transcript)")
        let passed = try sandbox.mmulab(["run", "munmap-race", "--duration", "500ms", "--plugin-directory", buildDirectory, "--report", clean])
        #expect(passed.status == 0, "\(passed.transcript)")

        let json = try jsonObject(at: brokenJSON)
        let bugs = try #require(json["bugs"] as? [[String: Any]])
        let dom = try Self.browse(browser, ["--dump-dom"], page: broken, sandbox: sandbox)
        #expect(dom.status == 0, "chromium failed on the report with findings")
        #expect(dom.output.contains("<ol class=\"bugs\" id=\"bugs\">"), "no bug list in the rendered page:\n\(dom.output.prefix(2_000))")
        #expect(dom.output.components(separatedBy: "<li class=\"bug\">").count - 1 == bugs.count, "one item per bug (\(bugs.count))")
        for bug in bugs {
            let title = try #require(bug["title"] as? String)
            #expect(dom.output.contains(title.replacingOccurrences(of: "&", with: "&amp;").replacingOccurrences(of: "<", with: "&lt;")), "\(title)")
        }
        #expect(dom.output.contains("<table id=\"invariants\">") && dom.output.contains("unpaired start/end"), "the totals per invariant")
        #expect(dom.output.components(separatedBy: "<svg").count - 1 >= 2, "the charts")
        #expect(dom.output.contains("mmulab run munmap-race --seed 1 --duration 500ms"), "the replay command")

        let shot = sandbox.path("findings.png")
        let painted = try Self.browse(browser, ["--screenshot=\(shot)", "--window-size=1100,1600"], page: broken, sandbox: sandbox)
        #expect(painted.status == 0)
        let size = (try? FileManager.default.attributesOfItem(atPath: shot)[.size] as? Int) ?? 0
        #expect(size > 20_000, "the page painted nothing worth a screenshot (\(size) bytes)")

        let cleanDOM = try Self.browse(browser, ["--dump-dom"], page: clean, sandbox: sandbox)
        #expect(cleanDOM.status == 0, "chromium failed on the clean report")
        #expect(cleanDOM.output.contains("None: every enabled check held.") && cleanDOM.output.contains(">clean</span>"), "\(cleanDOM.output.prefix(2_000))")
        #expect(!cleanDOM.output.contains("<li class=\"bug\">"))
        #expect(cleanDOM.output.contains("<svg"), "the clean report's charts")
    }
}
