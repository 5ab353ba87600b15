import LabSync
import MMUNotifier
import PluginHost
import VirtualMemory

/// A scenario made real: the machine, its address spaces and mappings,
/// the loaded plugins' instances and bindings. Built by `Lab.build`, torn
/// down by `teardown`, which says what was left behind.
final class Lab: @unchecked Sendable {
    // @unchecked: built on one thread before the actors start, read-only after.
    let scenario: Scenario
    let machine: Machine
    var spaces: [AddressSpace] = []
    /// By space index, then mapping index.
    var mappings: [[TrackedMapping]] = []
    var balloon: AddressSpace? = nil
    /// By plugin spec index: its instances.
    var instances: [[PluginInstance]] = []
    /// By plugin spec index, instance index, then binding index.
    var bindings: [[[PluginInstance.Binding]]] = []
    /// By plugin spec index, instance index: its callback latencies.
    var latencies: [[CallbackLatencies]] = []
    /// By space index, then mapping index: the file of a file mapping.
    var files: [[BackingFile?]] = []
    /// What the primary did to the lab's spaces, for findings' trails.
    let trail: EventTrail
    /// Where findings go (the hot-pages check notes them from a callback).
    let findings: FindingLog

    private init(scenario: Scenario, machine: Machine, findings: FindingLog, window: ClosedRange<UInt64>?) {
        self.scenario = scenario
        self.machine = machine
        self.findings = findings
        trail = EventTrail(clock: LabClock(domain: machine.sync), domain: machine.sync, window: window)
    }

    /// Why a scenario could not be set up (bad input: exit status 2).
    struct SetupError: Error, CustomStringConvertible {
        var description: String
    }

    /// Where the bundled plugins are: beside the executable, or in
    /// `pluginDirectory` when given (tests).
    static func pluginPath(_ plugin: String, pluginDirectory: String?) -> String {
        if plugin.contains("/") { return plugin }
        let directory = pluginDirectory ?? PluginDiscovery.executableDirectory ?? "."
        return "\(directory)/libmmulab-plugin-\(plugin).so"
    }

    static func build(
        _ scenario: Scenario, pluginDirectory: String?, faults: MemoryFaultInjection, findings: FindingLog, sync: SyncDomain = SyncDomain(),
        traceWindow: ClosedRange<UInt64>? = nil
    ) throws(SetupError) -> Lab {
        let spec = scenario.machine
        let memory = PhysicalMemory.Configuration(
            frames: spec.frames, nodes: spec.nodes, payloadSize: spec.payloadSize, lowFree: spec.lowWatermark, highFree: spec.highWatermark)
        if let problem = memory.problem { throw SetupError(description: "machine: \(problem)") }
        let lab = Lab(
            scenario: scenario, machine: Machine(.init(memory: memory, swapSlots: spec.swapSlots, faults: faults), notifierCore: NotifierCore(sync: sync)),
            findings: findings, window: traceWindow)
        do {
            try lab.makeSpaces()
            try lab.loadPlugins(pluginDirectory: pluginDirectory)
        } catch {
            _ = lab.teardown()
            throw error
        }
        return lab
    }

    private func makeSpaces() throws(SetupError) {
        for (spaceIndex, spaceSpec) in scenario.spaces.enumerated() {
            let space = machine.makeAddressSpace()
            spaces.append(space)
            var tracked: [TrackedMapping] = []
            files.append([])
            for (mappingIndex, mapping) in spaceSpec.mappings.enumerated() {
                let length = UInt64(mapping.pages) * 4096
                do {
                    let address: UInt64
                    switch mapping.kind {
                    case .anonymous:
                        address = try space.map(length: length, kind: .anonymousPrivate)
                        files[spaceIndex].append(nil)
                    case .file:
                        let file = machine.makeFile(named: "\(spaceSpec.name)-\(mapping.name)", pages: mapping.pages)
                        address = try space.map(length: length, kind: .fileShared, file: file)
                        files[spaceIndex].append(file)
                    }
                    var duplicates = 0
                    if mapping.mergeable {
                        try space.adviseMergeable(start: address, length: length)
                        duplicates = Int(Double(mapping.pages) * scenario.pressure.ksmDuplicates)
                    }
                    let entry = TrackedMapping(
                        spaceIndex: spaceIndex, mappingIndex: mappingIndex, address: address, pages: mapping.pages, duplicates: duplicates,
                        names: (spaceSpec.name, mapping.name), space: space, hot: mapping.hot)
                    for page in 0..<duplicates { try space.write(address + UInt64(page) * 4096, entry.duplicateContent) }
                    tracked.append(entry)
                } catch {
                    throw SetupError(description: "\(spaceSpec.name)/\(mapping.name): \(error)")
                }
            }
            mappings.append(tracked)
            // Registered before any plugin, so the trail misses nothing a plugin sees.
            watch(space, hotMappings: tracked.filter { $0.hot != nil })
        }
        if let pages = scenario.pressure.balloonPages {
            let hog = machine.makeAddressSpace()
            balloon = hog
            do {
                let base = try hog.map(length: UInt64(pages) * 4096, kind: .anonymousPrivate)
                try hog.populate(start: base, length: UInt64(pages) * 4096, write: true)
            } catch {
                throw SetupError(description: "balloon of \(pages) pages: \(error)")
            }
        }
    }

    /// Puts the lab's trail subscriber on `space` (from any thread; the
    /// space's exit releases it).
    func watch(_ space: AddressSpace, hotMappings: [TrackedMapping] = []) {
        try? space.notifiers.register(TrailSubscriber(trail: trail, space: space.id, hotMappings: hotMappings, findings: findings))
    }

    /// The lab's place for a finding about `address` of `space` (nil if
    /// the address is in none of the lab's tracked mappings).
    func place(_ space: AddressSpaceID, _ address: UInt64) -> Finding.Place? {
        for mapping in mappings.joined() where mapping.space.id == space {
            if address >= mapping.address, address < mapping.address + UInt64(mapping.pages) * 4096 {
                return mapping.place(of: Int((address - mapping.address) >> 12))
            }
        }
        return nil
    }

    private func loadPlugins(pluginDirectory: String?) throws(SetupError) {
        for spec in scenario.plugins {
            let path = Self.pluginPath(spec.plugin, pluginDirectory: pluginDirectory)
            let plugin: LoadedPlugin
            switch PluginLoader.load(path) {
            case .success(let loaded): plugin = loaded
            case .failure(let error): throw SetupError(description: "plugin \(spec.name): \(error)")
            }
            // Recorded as they are made, so a failure part way tears down what exists.
            instances.append([])
            bindings.append([])
            latencies.append([])
            let p = instances.count - 1
            for _ in 0..<spec.instances {
                let timing = CallbackLatencies(plugin: "\(spec.name)#\(instances[p].count)", domain: machine.sync)
                switch PluginInstance.create(plugin, machine: machine, options: spec.options, observer: timing) {
                case .success(let created):
                    latencies[p].append(timing)
                    instances[p].append(created)
                    bindings[p].append([])
                case .failure(let error): throw SetupError(description: "plugin \(spec.name): \(error)")
                }
                let i = instances[p].count - 1
                for binding in spec.bindings {
                    let (space, mapping) = locate(binding.space, binding.mapping)
                    do {
                        bindings[p][i].append(try instances[p][i].attach(
                            addressSpace: spaces[space].id, start: mapping.address, length: UInt64(mapping.pages) * 4096,
                            deviceAddress: binding.deviceAddress, write: binding.write, pinned: binding.pinned))
                    } catch {
                        throw SetupError(description: "plugin \(spec.name): binding \(binding.space)/\(binding.mapping): \(error)")
                    }
                }
            }
        }
    }

    /// The indices of a space and its tracked mapping, by name (checked by the reader).
    func locate(_ space: String, _ mapping: String) -> (Int, TrackedMapping) {
        let spaceIndex = scenario.spaces.firstIndex { $0.name == space }!
        let mappingIndex = scenario.spaces[spaceIndex].mappings.firstIndex { $0.name == mapping }!
        return (spaceIndex, mappings[spaceIndex][mappingIndex])
    }

    /// Instance 0 of the plugin the scenario calls `name` (checked by the reader).
    func instance(of name: String) -> PluginInstance {
        instances[scenario.plugins.firstIndex { $0.name == name }!][0]
    }

    /// Instance 0 of plugin `name` and its binding on `space`/`mapping`
    /// (checked by the reader).
    func binding(of name: String, on space: String, _ mapping: String) -> (PluginInstance, PluginInstance.Binding) {
        let p = scenario.plugins.firstIndex { $0.name == name }!
        let b = scenario.plugins[p].bindings.firstIndex { $0.space == space && $0.mapping == mapping }!
        return (instances[p][0], bindings[p][0][b])
    }

    /// Detaches and destroys every instance, exits every address space,
    /// drops the caches, and returns the frames still allocated (a leak:
    /// a pin not returned, a page-table page not freed).
    func teardown() -> [String] {
        machine.stopBackgroundReclaim()
        for (pluginIndex, made) in instances.enumerated() {
            for (instanceIndex, instance) in made.enumerated() {
                if pluginIndex < bindings.count, instanceIndex < bindings[pluginIndex].count {
                    for binding in bindings[pluginIndex][instanceIndex] { instance.detach(binding) }
                }
                instance.destroy()
            }
        }
        for space in machine.addressSpaces { space.exit() }
        _ = machine.dropCaches()
        return machine.memory.allocatedFrames().map { "\($0)" }
    }
}
