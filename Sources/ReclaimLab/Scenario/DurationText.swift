/// A length of time as a person writes it, on the command line
/// (`--duration`) and in a scenario file (`length: 2m`): a number of
/// seconds (`10`, `2.5`) or a number with a unit, `ms`, `s`, `m` or `h`
/// (`500ms`, `10s`, `2m`). Underscores between digits are allowed.
public enum DurationText {
    /// Why a text is not a duration.
    public struct Problem: Error, Sendable, CustomStringConvertible {
        public let description: String
    }

    /// The seconds `text` says, which must lie in `range`.
    public static func seconds(_ text: String, in range: ClosedRange<Double> = 0.001...86_400) throws(Problem) -> Double {
        let trimmed = text.filter { $0 != "_" && $0 != " " }
        // A scale below 1 divides (500 / 1000 is 0.5 exactly; 500 * 0.001 is not).
        let units: [(suffix: String, scale: Double)] = [("ms", 0.001), ("s", 1), ("m", 60), ("h", 3_600)]
        var number = Substring(trimmed)
        var scale = 1.0
        for unit in units where trimmed.hasSuffix(unit.suffix) {
            // "ms" is tried before "s" and "m": the first that fits wins.
            number = trimmed.dropLast(unit.suffix.count)
            scale = unit.scale
            break
        }
        guard let value = Double(number), value.isFinite, !number.hasPrefix("+"), number.first != "." || number.count > 1 else {
            throw Problem(description: "'\(text)' is not a duration (seconds, or a number with ms, s, m or h: 500ms, 10s, 2m)")
        }
        let seconds = scale < 1 ? value / (1 / scale).rounded() : value * scale
        guard seconds > 0 else { throw Problem(description: "a duration must be more than 0 (got \(text))") }
        guard range.contains(seconds) else {
            throw Problem(description: "\(text) is out of range: \(ReplayCommand.secondsText(range.lowerBound)) to \(ReplayCommand.secondsText(range.upperBound))")
        }
        return seconds
    }
}
