import ArgumentParser
import ReclaimLab

/// Parsers for the numbers the command line takes, for `@Option(parsing:
/// .unconditional, transform:)`: the value after the flag is taken even
/// when it starts with `-`, so `--seed -1` gets a message about seeds
/// rather than "missing value", and every message says what is allowed.
enum ArgumentValues {
    /// A seed: a whole number from 0 (decimal, or hex with 0x).
    static func seed(_ text: String) throws -> UInt64 {
        if text.hasPrefix("-"), Int64(text) != nil || Double(text) != nil {
            throw ValidationError("seeds are 0 or more (got \(text))")
        }
        let digits = text.filter { $0 != "_" }
        let value = digits.hasPrefix("0x") || digits.hasPrefix("0X") ? UInt64(digits.dropFirst(2), radix: 16) : UInt64(digits)
        guard let value else { throw ValidationError("'\(text)' is not a seed (a whole number from 0 to \(UInt64.max))") }
        return value
    }

    /// A length of time: seconds, or a number with ms, s, m or h (`DurationText`).
    static func duration(_ text: String) throws -> Double {
        do {
            return try DurationText.seconds(text)
        } catch {
            throw ValidationError(error.description)
        }
    }

    /// A whole number in `range`.
    static func count(_ text: String, in range: ClosedRange<Int>) throws -> Int {
        guard let value = Int(text.filter { $0 != "_" }) else {
            throw ValidationError("'\(text)' is not a whole number (\(range.lowerBound)...\(range.upperBound))")
        }
        guard range.contains(value) else {
            throw ValidationError(value < 0 ? "it must be \(range.lowerBound) or more, not negative (got \(text))" : "\(value) is out of range \(range.lowerBound)...\(range.upperBound)")
        }
        return value
    }
}
