/// The report's bug list: one item per bug (`<ol id="bugs">`), its title,
/// count and symptoms, its first occurrence in full, and its further
/// occurrences and symptom examples folded away.
extension HTMLReport {
    /// Bugs shown in full; the rest are listed by title.
    static let bugsShown = 50

    static func bugs(_ r: RunResult) -> String {
        var out = "<h2>Bugs</h2>\n"
        if r.bugs.isEmpty {
            switch r.verdict {
            case .skip: return out + note("None found, but no read was checked: the run proves nothing.")
            default: return out + note("None: every enabled check held.")
            }
        }
        out += "<ol class=\"bugs\" id=\"bugs\">\n"
        for (index, bug) in r.bugs.enumerated() {
            out += "<li class=\"bug\"><div class=\"bug-title\">\(escape(bug.title))</div>\n"
            var count = "\(grouped(bug.count)) time\(bug.count == 1 ? "" : "s"), first seen at \(fixed(bug.firstSeenSeconds, 3)) s"
            if !bug.symptoms.isEmpty {
                count += "; symptoms of the same accesses: " + bug.symptoms.map { "\($0.invariant.rawValue) \(grouped($0.count))" }.joined(separator: ", ")
            }
            out += "<p class=\"count\">\(escape(count))</p>\n"
            if index < bugsShown {
                out += occurrence(bug.first)
                if !bug.examples.isEmpty {
                    out += "<details><summary>\(bug.examples.count) more occurrence\(bug.examples.count == 1 ? "" : "s")</summary>\n"
                        + bug.examples.map(occurrence).joined() + "</details>\n"
                }
                if !bug.symptomExamples.isEmpty {
                    out += "<details><summary>symptoms seen by the oracle</summary>\n" + bug.symptomExamples.map(occurrence).joined() + "</details>\n"
                }
            }
            out += "</li>\n"
        }
        return out + "</ol>\n"
    }

    /// One occurrence with its evidence.
    private static func occurrence(_ finding: Finding) -> String {
        var out = "<div class=\"detail\">\(escape(finding.detail))</div>\n"
        var facts: [String] = []
        if let seconds = finding.seconds { facts.append("at \(fixed(seconds, 6)) s") }
        if let actor = finding.actor { facts.append("by <code>\(escape(actor))</code>") }
        if let p = finding.place {
            facts.append("space <code>\(escape(p.space))</code>, mapping <code>\(escape(p.mapping))</code>, page \(p.page), address "
                + "<code>0x\(String(p.address, radix: 16))</code>, the primary maps <code>\(escape(p.frame))</code> now")
        }
        if let translation = finding.deviceTranslation { facts.append("the device used <code>\(escape(translation))</code>") }
        if !facts.isEmpty { out += "<p class=\"place\">" + facts.joined(separator: "; ") + "</p>\n" }
        if !finding.trail.isEmpty {
            out += "<p class=\"place\">Events on the page, oldest first:</p>\n<ol class=\"trail\">"
                + finding.trail.map { "<li><code>\(escape($0))</code></li>" }.joined() + "</ol>\n"
        }
        return out
    }
}
