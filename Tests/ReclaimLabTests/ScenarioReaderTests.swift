import ReclaimLab
import Testing

/// Scenario files: a good one reads back as written, with defaults for
/// what it leaves out; every kind of mistake is an error naming the file,
/// the line and the field, and nothing is returned.
@Suite("Scenario files")
struct ScenarioReaderTests {
    static let storm = """
        name: reclaim-storm
        summary: memory oversubscribed 2x, every plugin active
        seed: 0x2a
        length: { seconds: 30 }
        machine: { frames: 2048, nodes: 2, swap-slots: 8192, low-watermark: 32, high-watermark: 64 }
        spaces:
          - name: vm
            mappings:
              - { name: guest, pages: 2048, mergeable: true }
          - name: app
            mappings:
              - { name: heap, pages: 1024 }
              - { name: data, kind: file, pages: 256 }
        plugins:
          - plugin: kvm
            options: change-pte=1
            bindings:
              - { space: vm, mapping: guest, device-address: 0x1_0000_0000 }
          - plugin: rdma
            name: nic
            instances: 2
            bindings:
              - { space: app, mapping: heap, pinned: false }
        workloads:
          - { name: guest, actor: kvm, space: vm, mapping: guest, threads: 2, pattern: zipfian, zipf-s: 1.1, writes: 0.3 }
          - { name: cpu, actor: cpu, space: app, mapping: heap, pattern: sequential, rate: 100000 }
          - { name: peer, actor: nic, space: app, mapping: heap }
        pressure:
          balloon-pages: 512
          migration-rate: 1000
          ksm: { scans-per-second: 20, duplicates: 0.25 }
          churn: [ { space: app, mapping: heap, rate: 5 } ]
          fork: [ { space: app, rate: 2 } ]
        checks: [stale-translation, lost-write]
        """

    @Test func aScenarioReadsBackAsWritten() throws {
        let s = try ScenarioReader.read(yaml: Self.storm, file: "storm.yaml")
        #expect(s.name == "reclaim-storm" && s.seed == 42 && s.length == .seconds(30))
        #expect(s.machine.frames == 2048 && s.machine.nodes == 2 && s.machine.lowWatermark == 32 && s.machine.payloadSize == 16)
        #expect(s.spaces.map(\.name) == ["vm", "app"])
        #expect(s.spaces[1].mappings[1] == MappingSpec(name: "data", kind: .file, pages: 256, mergeable: false))
        #expect(s.plugins[0].name == "kvm" && s.plugins[0].bindings[0].deviceAddress == 0x1_0000_0000)
        #expect(s.plugins[1].name == "nic" && s.plugins[1].plugin == "rdma" && s.plugins[1].instances == 2)
        #expect(s.workloads[0].actor == .device(plugin: "kvm") && s.workloads[0].pattern == .zipfian(s: 1.1) && s.workloads[0].writes == 0.3)
        #expect(s.workloads[1].actor == .cpu && s.workloads[1].pattern == .sequential && s.workloads[1].rate == 100_000)
        #expect(s.workloads[2].writes == 0.5 && s.workloads[2].threads == 1, "defaults")
        #expect(s.pressure.balloonPages == 512 && s.pressure.ksmScansPerSecond == 20 && s.pressure.ksmDuplicates == 0.25)
        #expect(s.pressure.churn == [.init(space: "app", mapping: "heap", rate: 5)])
        #expect(s.pressure.forkRate == [.init(space: "app", mapping: nil, rate: 2)])
        #expect(s.pressure.backgroundReclaim, "kswapd is on unless a scenario turns it off")
        #expect(s.checks == [.staleTranslation, .lostWrite])
    }

    @Test func theSmallestScenarioTakesTheDefaults() throws {
        let s = try ScenarioReader.read(yaml: """
            name: tiny
            spaces: [ { name: a, mappings: [ { name: m, pages: 8 } ] } ]
            workloads: [ { name: w, actor: cpu, space: a, mapping: m } ]
            """, file: "tiny.yaml")
        #expect(s.length == .operations(100_000) && s.seed == 1 && s.machine == MachineSpec() && s.plugins.isEmpty)
        #expect(s.checks == Set(Scenario.Check.allCases))
    }

    /// Each broken document, the line and field the error must name, and a
    /// piece of its message.
    @Test(arguments: [
        ("name: x\nspaces: [ { name: a, mappings: [ { name: m, pages: 8 } ] }\n", 3, "", "YAML syntax"),
        ("", nil, "", "empty"),
        ("summary: no name\nworkloads: []\n", 1, "", "missing field 'name'"),
        ("name: x\nmachin: { frames: 64 }\n", 2, "machin", "unknown field"),
        ("name: x\nmachine: { frames: 64, nodes: 9 }\n", 2, "machine.nodes", "out of range 1...8"),
        ("name: x\nmachine: { frames: lots }\n", 2, "machine.frames", "expected an integer"),
        ("name: x\nmachine: { frames: 1024, low-watermark: 64, high-watermark: 32 }\n", 2, "machine.low-watermark", "below the high one"),
        ("name: x\nmachine: { frames: 1024, movable-frames: 1000 }\n", 2, "machine.movable-frames", "must leave a normal zone"),
        ("name: x\nmachine: { frames: 1024, transparent-hugepages: sometimes }\n", 2, "machine.transparent-hugepages", "not one of never"),
        ("name: x\nspaces: [ { name: a, mappings: [ { name: m, kind: file, pages: 8, huge: true } ] } ]\n", 2, "spaces[0].mappings[0].huge",
            "anonymous mappings only"),
        ("name: x\nlength: { operations: 5, seconds: 1 }\n", 2, "length", "either 'operations' or 'seconds'"),
        ("name: x\nspaces:\n  - name: a\n    mappings: [ { name: m, pages: 8 } ]\n  - name: a\n    mappings: []\n", 5, "spaces[1]",
            "a second address space named 'a'"),
        ("name: x\nspaces: [ { name: a, mappings: [ { name: m, pages: 8, kind: shm } ] } ]\n", 2, "spaces[0].mappings[0].kind",
            "not one of anonymous, file"),
        ("name: x\nspaces: [ { name: a, mappings: [ { name: m, pages: 8 } ] } ]\nplugins:\n  - plugin: kvm\n    bindings: [ { space: b, mapping: m } ]\n",
            5, "plugins[0].bindings[0].space", "no address space named 'b'"),
        ("name: x\nspaces: [ { name: a, mappings: [ { name: m, pages: 8 } ] } ]\nplugins:\n  - plugin: kvm\n    bindings: [ { space: a, mapping: n } ]\n",
            5, "plugins[0].bindings[0].mapping", "'a' has no mapping named 'n'"),
        ("name: x\nplugins: [ { plugin: tpu } ]\n", 2, "plugins[0].plugin", "neither a bundled plugin"),
        ("name: x\nspaces: [ { name: a, mappings: [ { name: m, pages: 8 } ] } ]\nplugins: [ { plugin: gpu } ]\nworkloads:\n  - { name: w, actor: gpu, space: a, mapping: m }\n",
            5, "workloads[0].actor", "no binding on a/m"),
        ("name: x\nspaces: [ { name: a, mappings: [ { name: m, pages: 8 } ] } ]\nworkloads:\n  - { name: w, actor: cpu, space: a, mapping: m, writes: 2 }\n",
            4, "workloads[0].writes", "out of range"),
        ("name: x\nspaces: [ { name: a, mappings: [ { name: m, pages: 8 } ] } ]\nworkloads:\n  - { name: w, actor: cpu, space: a, mapping: m, zipf-s: 1 }\n",
            4, "workloads[0].zipf-s", "pattern: zipfian only"),
        ("name: x\nspaces: [ { name: a, mappings: [ { name: m, pages: 8 } ] } ]\nworkloads: []\n", 3, "workloads", "at least one workload"),
        ("name: x\nspaces: [ { name: a, mappings: [ { name: m, pages: 8 } ] } ]\nworkloads: [ { name: w, actor: cpu, space: a, mapping: m } ]\n"
            + "pressure:\n  churn: [ { space: a, mapping: m, rate: 5 } ]\n  mremap: [ { space: a, mapping: m, rate: 5 } ]\n", 6, "pressure.mremap",
            "churned too"),
        ("name: x\nspaces: [ { name: a, mappings: [ { name: m, pages: 8 } ] } ]\nworkloads:\n  - { name: w, actor: cpu, space: a, mapping: m, atomics: 0.5 }\n",
            4, "workloads[0].atomics", "atomics are a device's"),
        ("name: x\nspaces: [ { name: a, mappings: [ { name: m, pages: 8 } ] } ]\nworkloads: [ { name: w, actor: cpu, space: a, mapping: m } ]\n"
            + "pressure:\n  writeback: [ { space: a, mapping: m, rate: 5 } ]\n", 5, "pressure.writeback", "not a file mapping"),
        ("name: x\nspaces: [ { name: a, mappings: [ { name: m, pages: 8 } ] } ]\nworkloads: [ { name: w, actor: cpu, space: a, mapping: m } ]\n"
            + "pressure:\n  exit-release: [ { plugin: gpu, rate: 5 } ]\n", 5, "pressure.exit-release[0].plugin", "no plugin named 'gpu'"),
        ("name: x\nspaces: [ { name: a, mappings: [ { name: m, pages: 8 } ] } ]\nplugins: [ { plugin: gpu } ]\n"
            + "workloads: [ { name: w, actor: cpu, space: a, mapping: m } ]\n"
            + "pressure:\n  device-migration: [ { plugin: gpu, space: a, mapping: m, rate: 5 } ]\n", 6, "pressure.device-migration",
            "no binding on a/m"),
        ("name: x\nspaces: [ { name: a, mappings: [ { name: m, pages: 8, hot: maybe } ] } ]\n", 2, "spaces[0].mappings[0].hot", "true or false"),
        ("name: x\nspaces: [ { name: a, mappings: [ { name: m, kind: file, pages: 8 } ] } ]\nworkloads: [ { name: w, actor: cpu, space: a, mapping: m } ]\n"
            + "pressure:\n  churn: [ { space: a, mapping: m, rate: 5 } ]\n", 5, "pressure.churn", "anonymous memory only"),
        ("name: x\nspaces: [ { name: a, mappings: [ { name: m, kind: file, pages: 8 } ] } ]\nworkloads: [ { name: w, actor: cpu, space: a, mapping: m } ]\n"
            + "pressure:\n  lazy-free: [ { space: a, mapping: m, rate: 5 } ]\n", 5, "pressure.lazy-free[0]", "MADV_FREE applies to anonymous memory only"),
        ("name: x\nspaces: [ { name: a, mappings: [ { name: m, pages: 8 } ] } ]\nworkloads: [ { name: w, actor: cpu, space: a, mapping: m } ]\n"
            + "pressure:\n  lazy-free: [ { space: a, mapping: m, rate: 5, pages: 9 } ]\n", 5, "pressure.lazy-free[0].pages", "do not fit in a/m"),
        ("name: x\nspaces: [ { name: a, mappings: [ { name: m, pages: 8 } ] } ]\nworkloads: [ { name: w, actor: cpu, space: a, mapping: m } ]\nchecks: [stale]\n",
            4, "checks[0]", "not one of stale-translation"),
        ("name: x\nmachine: { frames: 64, swap-slots: 0 }\nspaces: [ { name: a, mappings: [ { name: m, pages: 65 } ] } ]\nworkloads: [ { name: w, actor: cpu, space: a, mapping: m } ]\n",
            3, "spaces", "do not fit in 64 frames"),
    ] as [(String, Int?, String, String)])
    func aMistakeNamesTheFileLineAndField(yaml: String, line: Int?, field: String, message: String) {
        do {
            let scenario = try ScenarioReader.read(yaml: yaml, file: "bad.yaml")
            Issue.record("accepted: \(scenario)")
        } catch {
            #expect(error.file == "bad.yaml")
            #expect(error.line == line, "\(error)")
            #expect(error.field == field, "\(error)")
            #expect(error.message.contains(message), "\(error)")
            #expect("\(error)".hasPrefix("bad.yaml\(line.map { ":\($0)" } ?? "")"), "printed as file:line:column: \(error)")
        }
    }
}

/// A scenario written out (`ScenarioWriter`, what the report shows as the
/// scenario as it ran) reads back as the same scenario; durations are
/// spelled as on the command line; overlapping bindings are refused.
@Suite("Scenario files, written and read back")
struct ScenarioWriterTests {
    @Test(arguments: Catalogue.entries.map(\.name))
    func everyBuiltInScenarioReadsBackAsWritten(name: String) throws {
        let scenario = try #require(try Catalogue.scenario(named: name))
        #expect(try ScenarioReader.read(yaml: ScenarioWriter.yaml(scenario), file: "written.yaml") == scenario)
        let added = try scenario.adding(plugin: "/some where/lib\"odd\".so", options: "bug=stale, more: yes")
        #expect(try ScenarioReader.read(yaml: ScenarioWriter.yaml(added), file: "written.yaml") == added)
    }

    @Test func everyFieldReadsBackAsWritten() throws {
        var scenario = try ScenarioReader.read(yaml: ScenarioReaderTests.storm, file: "storm.yaml")
        scenario.summary = "quotes \" and \\ and a\ttab"
        scenario.length = .operations(1_234)
        scenario.pressure.oomKill = .init(space: "app", afterMilliseconds: 250)
        scenario.pressure.mprotect = [.init(space: "app", mapping: "heap", rate: 3)]
        scenario.pressure.writeback = [.init(space: "app", mapping: "data", rate: 4)]
        scenario.pressure.deviceMigration = [.init(plugin: "nic", space: "app", mapping: "heap", rate: 5, pages: 6)]
        scenario.pressure.attachChurn = [.init(plugin: "nic", space: "app", mapping: "heap", rate: 7, pages: 8)]
        scenario.pressure.exitRelease = [.init(plugin: "kvm", rate: 9, pages: 10)]
        scenario.pressure.lazyFree = [.init(space: "app", mapping: "heap", rate: 11, pages: 12)]
        scenario.workloads[2].atomics = 0.25
        scenario.pressure.compactionRate = 13
        scenario.pressure.userfaultSnapshot = [.init(space: "app", mapping: "heap", rate: 16)]
        scenario.pressure.mremap = [.init(space: "vm", mapping: "guest", rate: 17)]
        scenario.pressure.attachChurn.append(.init(plugin: "nic", space: "app", mapping: "heap", rate: 14, pages: 15, pinned: true))
        scenario.machine.movableFrames = 1024
        scenario.machine.transparentHugePages = .madvise
        scenario.spaces[1].mappings[0].huge = true
        scenario.pressure.collapseScansPerSecond = 18
        scenario.pressure.mprotect = [.init(space: "app", mapping: "heap", rate: 3, pages: 19)]
        scenario.pressure.backgroundReclaim = false
        #expect(try ScenarioReader.read(yaml: ScenarioWriter.yaml(scenario), file: "written.yaml") == scenario)
    }

    @Test(arguments: [("length: 2m", 120.0), ("length: 500ms", 0.5), ("length: { seconds: 10s }", 10), ("length: { seconds: 1.5 }", 1.5)])
    func aLengthIsADuration(line: String, seconds: Double) throws {
        let scenario = try ScenarioReader.read(yaml: """
            name: t
            \(line)
            spaces: [ { name: a, mappings: [ { name: m, pages: 8 } ] } ]
            workloads: [ { name: w, actor: cpu, space: a, mapping: m } ]
            """, file: "t.yaml")
        #expect(scenario.length == .seconds(seconds))
    }

    @Test(arguments: [
        ("length: -5s", "more than 0"), ("length: 5 minutes", "not a duration"), ("length: 2d", "not a duration"), ("length: 25h", "out of range"),
    ])
    func aBadLengthIsAnError(line: String, message: String) {
        #expect {
            try ScenarioReader.read(yaml: "name: t\n\(line)\nspaces: []\nworkloads: []\n", file: "t.yaml")
        } throws: { error in
            let error = error as? ScenarioError
            return error?.line == 2 && error?.field == "length" && error?.message.contains(message) == true
        }
    }

    @Test(arguments: [
        ("[ { space: a, mapping: m, device-address: 0x10000 }, { space: a, mapping: n, device-address: 0x17000 } ]", true),
        ("[ { space: a, mapping: m, device-address: 0x10000 }, { space: a, mapping: n, device-address: 0x18000 } ]", false),
        ("[ { space: a, mapping: m }, { space: a, mapping: m } ]", true),
        ("[ { space: a, mapping: m }, { space: a, mapping: n } ]", false),
    ])
    func overlappingBindingsOfOnePluginAreRefused(bindings: String, overlaps: Bool) {
        let yaml = """
            name: t
            spaces: [ { name: a, mappings: [ { name: m, pages: 8 }, { name: n, pages: 8 } ] } ]
            plugins:
              - plugin: mirror-c
                bindings: \(bindings)
            workloads: [ { name: w, actor: cpu, space: a, mapping: m } ]
            """
        do {
            _ = try ScenarioReader.read(yaml: yaml, file: "t.yaml")
            #expect(!overlaps, "accepted overlapping bindings \(bindings)")
        } catch {
            #expect(overlaps, "\(error)")
            #expect(error.field == "plugins[0].bindings[1]" && error.line == 5 && error.message.contains("overlaps bindings[0]"), "\(error)")
        }
    }
}
