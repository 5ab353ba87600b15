import Foundation
import Testing

/// `mmulab run` as a user meets it: exit status 2 and a message naming the
/// problem for every kind of bad input, 0 and a JSON report for a clean run.
@Suite("mmulab run")
struct RunCommandTests {
    static let scenarioHead = """
        name: tiny
        length: { seconds: 1 }
        machine: { frames: 64, swap-slots: 64 }

        """

    @Test("a scenario file with an unknown key: exit 2, file:line and the key on stderr")
    func unknownKey() throws {
        let sandbox = try Sandbox()
        let file = try sandbox.write("unknown-key.yaml", Self.scenarioHead + "flavour: vanilla\n")
        let outcome = try sandbox.mmulab(["run", file])
        expectBadInput(outcome, mentions: ["\(file):4:", "flavour", "unknown field"])
    }

    @Test("a scenario file with a bad value: exit 2, file:line and the field on stderr")
    func badValue() throws {
        let sandbox = try Sandbox()
        let file = try sandbox.write("bad-value.yaml", "name: tiny\nlength: { seconds: 1 }\nmachine: { frames: lots }\n")
        let outcome = try sandbox.mmulab(["run", file])
        expectBadInput(outcome, mentions: ["\(file):3:", "machine.frames", "lots"])
    }

    @Test("a scenario file that does not exist: exit 2, the path on stderr")
    func missingFile() throws {
        let sandbox = try Sandbox()
        let outcome = try sandbox.mmulab(["run", sandbox.path("absent.yaml")])
        expectBadInput(outcome, mentions: [sandbox.path("absent.yaml"), "cannot read"])
    }

    @Test("an unknown built-in name: exit 2, the name and the built-in ones on stderr")
    func unknownBuiltIn() throws {
        let outcome = try Sandbox().mmulab(["run", "no-such-scenario"])
        expectBadInput(outcome, mentions: ["no-such-scenario", "munmap-race"])
    }

    @Test(
        "bad flags: exit 2, the flag on stderr",
        arguments: [
            (["--duration", "-1"], "--duration"),
            (["--duration=-1"], "--duration"),
            (["--duration", "0"], "--duration"),
            (["--seed", "abc"], "abc"),
            (["--bogus"], "--bogus"),
        ])
    func badFlags(flags: [String], named: String) throws {
        let outcome = try Sandbox().mmulab(["run", "munmap-race"] + flags)
        expectBadInput(outcome, mentions: [named])
    }

    @Test(
        "bad flags give exit 2 in every subcommand, not ArgumentParser's 64",
        arguments: [
            ["--bogus"], ["demo", "--duration", "0"], ["notifier-storm", "--address-spaces", "x"], ["scenarios", "check"],
            ["scenarios", "list", "--bogus"], ["plugins", "inspect"], ["plugins", "list", "--bogus"], ["events", "--bogus"],
            ["campaign", "munmap-race"], ["campaign", "--seeds", "1"], ["campaign", "munmap-race", "--seeds", "1", "--jobs", "0"],
            ["campaign", "munmap-race", "--seeds", "1", "--timeout", "-5"],
        ])
    func badFlagsEverywhere(arguments: [String]) throws {
        let outcome = try Sandbox().mmulab(arguments)
        #expect(outcome.status == 2, "\(outcome.transcript)")
        #expect(outcome.stderr.contains("Error:") || outcome.stderr.contains("mmulab:"), "\(outcome.transcript)")
    }

    @Test("--json into a directory that does not exist: exit 2 before running")
    func jsonIntoMissingDirectory() throws {
        let sandbox = try Sandbox()
        let target = sandbox.path("no-such-dir/run.json")
        let outcome = try sandbox.mmulab(["run", "munmap-race", "--duration", "1", "--json", target])
        expectBadInput(outcome, mentions: ["--json", target])
        #expect(!outcome.stdout.contains("scenario munmap-race"), "it ran: \(outcome.transcript)")
    }

    @Test("a clean short run of a built-in scenario: exit 0 and a JSON report that says clean")
    func cleanRunWritesJSON() throws {
        let sandbox = try Sandbox()
        let report = sandbox.path("run.json")
        let outcome = try sandbox.mmulab(
            ["run", "munmap-race", "--seed", "7", "--duration", "1", "--plugin-directory", buildDirectory, "--json", report])
        #expect(outcome.status == 0, "\(outcome.transcript)")
        #expect(outcome.stdout.contains("clean"), "\(outcome.transcript)")
        let json = try jsonObject(at: report)
        #expect(json["clean"] as? Bool == true)
        #expect(json["scenario"] as? String == "munmap-race")
        #expect(json["seed"] as? Int == 7)
        #expect(json["findings_total"] as? Int == 0)
    }
}
