import ReclaimLab

/// How `mmulab run` and `mmulab campaign` turn a SCENARIO argument into a
/// scenario: a path (it has a `/` or ends in `.yaml`/`.yml`) is read as a
/// file; `-` is read from standard input; anything else must be a built-in
/// name (`mmulab scenarios list`).
enum ScenarioLookup {
    /// Why an argument names no usable scenario; `description` is the
    /// message for stderr (without the `mmulab: ` prefix): a malformed file
    /// gives `file:line:column: field: message`.
    struct Failure: Error, CustomStringConvertible {
        let description: String
    }

    /// Whether `argument` is taken as a file path rather than a built-in name.
    static func isFile(_ argument: String) -> Bool {
        argument.contains("/") || argument.hasSuffix(".yaml") || argument.hasSuffix(".yml")
    }

    /// The scenario `argument` names, read and fully checked; nothing runs.
    static func scenario(_ argument: String) throws(Failure) -> Scenario {
        do {
            if argument == "-" { return try ScenarioReader.readStandardInput() }
            if isFile(argument) { return try ScenarioReader.read(path: argument) }
            guard let builtIn = try Catalogue.scenario(named: argument) else {
                let names = Catalogue.entries.map(\.name).joined(separator: ", ")
                throw Failure(description: "no built-in scenario '\(argument)' (built in: \(names)); a file needs a path")
            }
            return builtIn
        } catch let error as Failure {
            throw error
        } catch {
            throw Failure(description: "\(error)")
        }
    }
}
