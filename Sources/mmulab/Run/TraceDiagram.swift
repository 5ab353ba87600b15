import ReclaimLab

/// A replayed run's last steps as a race diagram: one lane per thread, a
/// dot in the lane of the thread that ran each step, and what it did (an
/// operation of the synchronisation layer, or, indented, what the primary
/// told the devices at that step).
///
///        step  A B C
///       49773  ● │ │  main      lock 'mmap_lock mm#1'
///       49774  │ ● │  kswapd    spin lock 'page_table_lock mm#1'
///       49774  │ ● │  kswapd      ↳ invalidate start vmscan [0x1000020000, 0x1000021000) on mm#1
struct TraceDiagram {
    let lines: [TraceLine]

    /// Lane letters: A-Z, then a-z, then '?' for the rest.
    static func letter(_ lane: Int) -> Character {
        let letters = Array("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz")
        return lane < letters.count ? letters[lane] : "?"
    }

    var text: String {
        var lanes: [String] = []
        for line in lines where !line.thread.isEmpty && !lanes.contains(line.thread) { lanes.append(line.thread) }
        let nameWidth = min(max(lanes.map(\.count).max() ?? 6, 6), 24)
        let stepWidth = max(String(lines.last?.step ?? 0).count, 4)
        var out = lanes.enumerated().map { "  \(Self.letter($0.offset)) \($0.element)" }.joined(separator: "\n") + "\n"
        out += String(repeating: " ", count: stepWidth - 4) + "step  " + lanes.indices.map { String(Self.letter($0)) }.joined(separator: " ") + "\n"
        for line in lines {
            let lane = lanes.firstIndex(of: line.thread)
            let marks = lanes.indices.map { $0 == lane ? "●" : "│" }.joined(separator: " ")
            let step = String(line.step)
            let isEvent = !Self.isOperation(line.text)
            out += String(repeating: " ", count: stepWidth - step.count) + step + "  " + marks + "  "
                + line.thread.padded(to: nameWidth) + "  " + (isEvent ? "  ↳ " : "") + line.text + "\n"
        }
        return out
    }

    /// Whether the text is a scheduling point's operation (the rest are trail entries).
    static func isOperation(_ text: String) -> Bool {
        let operations = [
            "lock", "trylock", "unlock", "wait", "timed wait", "spin lock", "spin trylock", "spin unlock", "spin", "sleep", "spawn", "join",
            "yield", "start", "exit", "preemption point",
        ]
        return operations.contains { text == $0 || text.hasPrefix($0 + " '") }
    }
}
