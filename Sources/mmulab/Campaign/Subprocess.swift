import Foundation

/// Runs a short command to its end and gives back its status and output
/// (sbatch, squeue, sacct, scontrol). Not for the campaign's runs, which
/// `ChildProcess` starts in process groups of their own.
struct Subprocess {
    struct Result {
        let status: Int32
        let output: String
        let errors: String
        var succeeded: Bool { status == 0 }
    }

    /// Runs `arguments[0]` (looked up in PATH) with the rest as arguments.
    /// Nil when it cannot be started (not installed).
    static func run(_ arguments: [String], environment: [String: String]? = nil) -> Result? {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = arguments
        if let environment { process.environment = environment }
        let output = Pipe()
        let errors = Pipe()
        process.standardOutput = output
        process.standardError = errors
        process.standardInput = FileHandle.nullDevice
        do {
            try process.run()
        } catch {
            return nil
        }
        // Read both to their ends before waiting, so a full pipe never stalls the child.
        let outputData = output.fileHandleForReading.readDataToEndOfFile()
        let errorData = errors.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        if process.terminationStatus == 127 && errorData.isEmpty == false, String(decoding: errorData, as: UTF8.self).contains("No such file") {
            return nil
        }
        return Result(
            status: process.terminationStatus, output: String(decoding: outputData, as: UTF8.self),
            errors: String(decoding: errorData, as: UTF8.self))
    }
}
