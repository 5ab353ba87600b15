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
    /// By plugin spec index, instance index: how the run names the instance (`gpu#0`).
    var instanceLabels: [[String]] = []
    /// What the primary did to the lab's spaces, for findings' trails.
    let trail: EventTrail
    /// Where findings go (the hot-pages check notes them from a callback).
    let findings: BugTracker
    /// Who each thread of the run is, for violations that name only a thread.
    let actors: ActorRegistry
    /// Root causes first: the primary's DMA-check violations, and the symptoms filed against them.
    let attribution: Attribution
    /// What the run could not do as the scenario asked, for the summary
    /// (set up before the actors start).
    var notes: [String] = []
    /// The aging checks, one per instance.
    let aging = AgingChecks()
    /// The same, by instance.
    private var agingByInstance: [ObjectIdentifier: AgingCheck] = [:]

    /// The aging check of `instance` and the index of `mapping` in it, if
    /// the instance binds the mapping.
    func aging(of instance: PluginInstance, on mapping: TrackedMapping) -> (check: AgingCheck, mapping: Int)? {
        guard let check = agingByInstance[ObjectIdentifier(instance)], let index = check.index(of: mapping) else { return nil }
        return (check, index)
    }

    private init(scenario: Scenario, machine: Machine, enabled: Set<Finding.Invariant>, window: ClosedRange<UInt64>?) {
        self.scenario = scenario
        self.machine = machine
        let clock = LabClock(domain: machine.sync)
        trail = EventTrail(clock: clock, domain: machine.sync, window: window)
        findings = BugTracker(enabled: enabled, clock: clock, domain: machine.sync)
        actors = ActorRegistry(domain: machine.sync)
        attribution = Attribution(domain: machine.sync)
    }

    var clock: LabClock { trail.clock }

    /// Notes a symptom the tag oracle saw (counted at once; `evidence` is
    /// worked out for the first few of its key) and files it: against the
    /// root cause the primary flagged for it, or as a bug of its own.
    /// Blockable threads only.
    func noteSymptom(_ symptom: Symptom, evidence: () -> Finding) {
        guard let counted = findings.noteSymptom(symptom, evidence: evidence) else { return }
        attribution.file(counted, self)
    }

    /// Why a scenario could not be set up (bad input: exit status 2), and
    /// where in the scenario the cause is written, if known.
    struct SetupError: Error, CustomStringConvertible {
        var message: String
        var mark: SourceMark? = nil
        var description: String { mark.map { $0.error(message).description } ?? message }
    }

    /// Where the bundled plugins are: beside the executable, or in
    /// `pluginDirectory` when given (tests).
    static func pluginPath(_ plugin: String, pluginDirectory: String?) -> String {
        if plugin.contains("/") { return plugin }
        let directory = pluginDirectory ?? PluginDiscovery.executableDirectory ?? "."
        return "\(directory)/libmmulab-plugin-\(plugin).so"
    }

    static func build(
        _ scenario: Scenario, pluginDirectory: String?, faults: MemoryFaultInjection, enabled: Set<Finding.Invariant>,
        sync: SyncDomain = SyncDomain(), traceWindow: ClosedRange<UInt64>? = nil
    ) throws(SetupError) -> Lab {
        let spec = scenario.machine
        let memory = PhysicalMemory.Configuration(
            frames: spec.frames, nodes: spec.nodes, payloadSize: spec.payloadSize, lowFree: spec.lowWatermark, highFree: spec.highWatermark,
            movablePerNode: spec.movableFrames / spec.nodes)
        if let problem = memory.problem { throw SetupError(message: "machine: \(problem)", mark: scenario.machineMark.known) }
        let lab = Lab(
            scenario: scenario,
            machine: Machine(.init(memory: memory, swapSlots: spec.swapSlots, faults: faults, transparentHugePages: spec.transparentHugePages), notifierCore: NotifierCore(sync: sync)),
            enabled: enabled, window: traceWindow)
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
                    if mapping.huge { try space.adviseHugePage(start: address, length: length, enable: true) }
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
                    throw SetupError(message: "\(spaceSpec.name)/\(mapping.name): \(error)")
                }
            }
            mappings.append(tracked)
            // Registered before any plugin, so the trail misses nothing a plugin sees.
            watch(space, mappings: tracked)
        }
        if let pages = scenario.pressure.balloonPages {
            let hog = machine.makeAddressSpace()
            balloon = hog
            do {
                let base = try hog.map(length: UInt64(pages) * 4096, kind: .anonymousPrivate)
                try hog.populate(start: base, length: UInt64(pages) * 4096, write: true)
            } catch {
                throw SetupError(message: "balloon of \(pages) pages: \(error)")
            }
        }
    }

    /// Puts the lab's trail subscriber on `space`, whose tracked mappings
    /// are `mappings` (from any thread; the space's exit releases it).
    func watch(_ space: AddressSpace, mappings: [TrackedMapping] = []) {
        try? space.notifiers.register(TrailSubscriber(trail: trail, space: space.id, mappings: mappings, findings: findings, aging: aging))
    }

    /// The tracked mapping that holds `address` of `space`, if any.
    func mapping(_ space: AddressSpaceID, _ address: UInt64) -> TrackedMapping? {
        mappings.joined().first { $0.space.id == space && $0.contains(address) }
    }

    /// The last invalidation of the page at `address` of `space` at or
    /// before `nanoseconds` (nil: none known).
    func lastInvalidation(_ space: AddressSpaceID, _ address: UInt64, atOrBefore nanoseconds: UInt64) -> InvalidationMark? {
        if let mapping = mapping(space, address),
            case .known(let mark) = mapping.lastInvalidation(of: Int((address - mapping.address) >> 12), atOrBefore: nanoseconds)
        {
            return mark
        }
        return trail.lastInvalidation(space: space, address: address, atOrBefore: nanoseconds)
    }

    /// The lab's place for a finding about `address` of `space` (nil if
    /// the address is in none of the lab's tracked mappings).
    func place(_ space: AddressSpaceID, _ address: UInt64) -> Finding.Place? {
        mapping(space, address).map { $0.place(of: Int((address - $0.address) >> 12)) }
    }

    private func loadPlugins(pluginDirectory: String?) throws(SetupError) {
        for spec in scenario.plugins {
            let path = Self.pluginPath(spec.plugin, pluginDirectory: pluginDirectory)
            let plugin: LoadedPlugin
            switch PluginLoader.load(path) {
            case .success(let loaded): plugin = loaded
            case .failure(let error): throw SetupError(message: "plugin \(spec.name): \(error)", mark: spec.mark.known)
            }
            // Recorded as they are made, so a failure part way tears down what exists.
            instances.append([])
            bindings.append([])
            latencies.append([])
            instanceLabels.append([])
            let p = instances.count - 1
            for _ in 0..<spec.instances {
                let label = "\(spec.name)#\(instances[p].count)"
                let bound = spec.bindings.map { locate($0.space, $0.mapping).1 }
                let aging = AgingCheck(instance: label, mappings: bound, clock: machine.sync, findings: findings, trail: trail)
                self.aging.all.append(aging)
                let timing = CallbackLatencies(plugin: label, domain: machine.sync, aging: aging)
                switch PluginInstance.create(plugin, machine: machine, options: spec.options, observer: timing, label: label) {
                case .success(let created):
                    agingByInstance[ObjectIdentifier(created)] = aging
                    latencies[p].append(timing)
                    instances[p].append(created)
                    bindings[p].append([])
                    instanceLabels[p].append(label)
                case .failure(let error): throw SetupError(message: "plugin \(spec.name): \(error)", mark: spec.optionsMark.known ?? spec.mark.known)
                }
                let i = instances[p].count - 1
                for binding in spec.bindings {
                    let (space, mapping) = locate(binding.space, binding.mapping)
                    do {
                        bindings[p][i].append(try instances[p][i].attach(
                            addressSpace: spaces[space].id, start: mapping.address, length: UInt64(mapping.pages) * 4096,
                            deviceAddress: binding.deviceAddress, write: binding.write, pinned: binding.pinned))
                    } catch {
                        throw SetupError(
                            message: "plugin \(spec.name): binding \(binding.space)/\(binding.mapping): \(error)", mark: binding.mark.known ?? spec.mark.known)
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

    /// How the run names instance 0 of the plugin the scenario calls `name`.
    func label(of name: String) -> String { "\(name)#0" }

    /// Instance 0 of plugin `name` and its binding on `space`/`mapping`
    /// (checked by the reader).
    func binding(of name: String, on space: String, _ mapping: String) -> (PluginInstance, PluginInstance.Binding) {
        let p = scenario.plugins.firstIndex { $0.name == name }!
        let b = scenario.plugins[p].bindings.firstIndex { $0.space == space && $0.mapping == mapping }!
        return (instances[p][0], bindings[p][0][b])
    }

    /// Exits every address space with the plugins still bound (so each
    /// plugin's `release` and the exit's zap of its intervals run, as when
    /// a process exits under a device), then detaches and destroys every
    /// instance (what a plugin keeps past release, detach must free), drops
    /// the caches, and returns the frames still allocated (a leak: a pin
    /// not returned, a page-table page not freed).
    func teardown() -> [String] {
        machine.stopBackgroundReclaim()
        for space in machine.addressSpaces { space.exit() }
        for (pluginIndex, made) in instances.enumerated() {
            for (instanceIndex, instance) in made.enumerated() {
                if pluginIndex < bindings.count, instanceIndex < bindings[pluginIndex].count {
                    for binding in bindings[pluginIndex][instanceIndex] { instance.detach(binding) }
                }
                instance.destroy()
            }
        }
        _ = machine.dropCaches()
        return machine.memory.allocatedFrames().map { "\($0)" }
    }
}
