import Foundation

/// Writes `text` to `path` by way of `path + ".partial"`, renamed into
/// place, so a reader never sees half a report (the JSON and HTML reports
/// both write through this).
func writeReportFile(_ text: String, to path: String) throws {
    let temporary = path + ".partial"
    try text.write(toFile: temporary, atomically: false, encoding: .utf8)
    if FileManager.default.fileExists(atPath: path) { try FileManager.default.removeItem(atPath: path) }
    try FileManager.default.moveItem(atPath: temporary, toPath: path)
}
