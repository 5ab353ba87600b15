import LabSync
import MMUNotifier
import PluginHost
import Synchronization
import Testing
import TestSupport
import VirtualMemory

/// Runs an example plugin through dlopen against a short pressure workload.
func runMirrorUnderPressure(_ path: String) throws {
    let seed = testSeed
    let plugin = try load(path)
    let machine = makeMachine(frames: 384)
    machine.startBackgroundReclaim()
    defer { machine.stopBackgroundReclaim() }
    let space = machine.makeAddressSpace()
    let pages = 128
    let base = try space.map(length: UInt64(pages) * 4096, kind: .anonymousPrivate)
    // CPU pressure elsewhere, so reclaim runs while the device works.
    let ballast = try space.map(length: 384 * 4096, kind: .anonymousPrivate)
    let instance = try PluginInstance.create(plugin, machine: machine).get()
    let binding = try instance.attach(addressSpace: space.id, start: base, length: UInt64(pages) * 4096, deviceAddress: 0x1_0000_0000)

    let stop = Atomic<Bool>(false)
    let problems = SpinLocked<[String]>([], name: "problems", domain: machine.sync)
    let pressure = machine.sync.spawnThread(named: "pressure") {
        var rng = SplitMix64.stream(1, of: seed)
        var round = 0
        while !stop.load(ordering: .relaxed) {
            round += 1
            let page = UInt64(Int.random(in: 0..<384, using: &rng))
            try? space.write(ballast + page * 4096, [1])
            let target = base + UInt64(Int.random(in: 0..<pages, using: &rng)) * 4096
            switch round % 3 {
            case 0: _ = try? machine.pageOut(space, start: target, length: 4096)
            case 1: _ = machine.migrate(space, address: target, to: Int.random(in: 0..<2, using: &rng))
            default: try? space.write(ballast, [2])
            }
        }
    }
    var versions = [UInt32](repeating: 0, count: pages)
    var rng = SplitMix64.stream(2, of: seed)
    for iteration in 0..<(1_500 * stressScale) {
        let page = Int.random(in: 0..<pages, using: &rng)
        // Pressure from this thread too, so the run invalidates the device
        // however the scheduler treats the pressure thread.
        if iteration % 50 == 0 { _ = try machine.pageOut(space, start: base + UInt64(page) * 4096, length: 4096) }
        let deviceAddress = binding.deviceAddress + UInt64(page) * 4096
        var buffer = [UInt8](repeating: 0, count: 16)
        if Bool.random(using: &rng) {
            versions[page] += 1
            buffer = tag(page: page, version: versions[page])
            try buffer.withUnsafeMutableBytes { try instance.access(binding, deviceAddress: deviceAddress, write: true, buffer: $0) }
        } else {
            try buffer.withUnsafeMutableBytes { try instance.access(binding, deviceAddress: deviceAddress, write: false, buffer: $0) }
            let want = versions[page] == 0 ? [UInt8](repeating: 0, count: 16) : tag(page: page, version: versions[page])
            if buffer != want { problems.withLock { $0.append("seed \(seed): page \(page) read \(buffer), wanted \(want)") } }
        }
    }
    stop.store(true, ordering: .relaxed)
    pressure.join()
    // Before the leak check: kswapd holds the frames of a batch it has
    // isolated (off the LRU, one reference) until it is done with them.
    machine.stopBackgroundReclaim()
    // What the device wrote is what the CPU sees.
    for page in 0..<pages where versions[page] > 0 {
        let cpu = try space.read(base + UInt64(page) * 4096)
        if cpu != tag(page: page, version: versions[page]) { problems.withLock { $0.append("seed \(seed): CPU sees \(cpu) at page \(page)") } }
    }
    let stats = Dictionary(uniqueKeysWithValues: instance.statistics().map { ($0.name, $0.value) })
    instance.destroy()
    space.exit()
    machine.dropCaches()

    #expect(problems.withLock { $0 }.isEmpty, "\(problems.withLock { $0 }.prefix(5))")
    #expect(machine.violations.count == 0, "seed \(seed): \(machine.violations.snapshot.prefix(3))")
    #expect(machine.notifierCore.contractViolations.count == 0)
    #expect(machine.sync.contextViolations.count == 0, "\(machine.sync.contextViolations.snapshot.prefix(3))")
    #expect(stats["faults", default: 0] > 0 && stats["invalidations", default: 0] > 0, "the workload exercised nothing: \(stats)")
    #expect(machine.memory.freeFrames == 384, "seed \(seed): \(machine.memory.allocatedFrames().prefix(5))")
}

@Suite("Example plugins through dlopen")
struct MirrorPluginTests {
    @Test func theCMirrorKeepsDataCoherentUnderPressure() throws {
        try runMirrorUnderPressure(mirrorC)
    }

    @Test func theSwiftMirrorKeepsDataCoherentUnderPressure() throws {
        try runMirrorUnderPressure(mirrorSwift)
    }

    /// The test_hmm-style driver in kernel C, through the Linux shim.
    @Test func theKernelStyleMirrorKeepsDataCoherentUnderPressure() throws {
        try runMirrorUnderPressure(kernelMirror)
    }

    @Test func aPluginThatSleepsInANonBlockableCallbackIsReported() throws {
        let plugin = try load(fixture("sleepy"))
        let machine = makeMachine()
        let space = machine.makeAddressSpace()
        let base = try space.map(length: 8 * 4096, kind: .anonymousPrivate)
        try space.populate(start: base, length: 8 * 4096, write: true)
        let instance = try PluginInstance.create(plugin, machine: machine).get()
        let binding = try instance.attach(addressSpace: space.id, start: base, length: 8 * 4096)
        try space.adviseDontNeed(start: base, length: 4096)
        #expect(machine.sync.contextViolations.count == 0, "sleeping in a blockable start is fine")
        #expect(machine.reap(space))
        let violations = machine.sync.contextViolations.snapshot
        #expect(!violations.isEmpty, "the sleep in the OOM reaper's non-blockable start must be reported")
        #expect(violations.allSatisfy { $0.operation == .sleep && $0.context.subject == "oomReap" })
        instance.detach(binding)
        instance.destroy()
    }
}

@Suite("Whole-space subscriptions through the ABI")
struct SubscriptionThroughABITests {
    @Test(arguments: ["countingc", "countingswift"])
    func startsAndEndsArriveInPairs(name: String) throws {
        let plugin = try load(fixture(name))
        let machine = makeMachine()
        let space = machine.makeAddressSpace()
        let base = try space.map(length: 16 * 4096, kind: .anonymousPrivate)
        let instance = try PluginInstance.create(plugin, machine: machine).get()
        let binding = try instance.attach(addressSpace: space.id, start: base, length: 16 * 4096)
        #expect(instance.subscribers.count == 1)
        try space.populate(start: base, length: 16 * 4096, write: true)
        try space.protect(start: base, length: 4096, .read)
        try space.adviseDontNeed(start: base, length: 8 * 4096)
        #expect(try machine.pageOut(space, start: base + 8 * 4096, length: 4 * 4096) == 4)
        let stats = Dictionary(uniqueKeysWithValues: instance.statistics().map { ($0.name, $0.value) })
        #expect(stats["starts"] == 1 + 1 + 4, "mprotect, DONTNEED and four vmscan invalidations: \(stats)")
        #expect(stats["starts"] == stats["ends"])
        instance.detach(binding)
        #expect(instance.subscribers.isEmpty)
        try space.unmap(start: base, length: 16 * 4096)
        let after = Dictionary(uniqueKeysWithValues: instance.statistics().map { ($0.name, $0.value) })
        #expect(after["starts"] == stats["starts"], "no callback after unsubscribe")
        instance.destroy()
    }
}

@Suite("Host services through the ABI")
struct HostServicesThroughABITests {
    @Test func pinsShrinkersPageTablePagesAndCompletionsWork() throws {
        let plugin = try load(fixture("servicesprobe"))
        let machine = makeMachine(frames: 256)
        let space = machine.makeAddressSpace()
        let file = machine.makeFile(named: "rdma-buffer", pages: 4)
        let base = try space.map(length: 4 * 4096, kind: .fileShared, file: file)
        let instance = try PluginInstance.create(plugin, machine: machine).get()
        #expect(machine.memory.freeFrames == 255, "a page-table page is charged to physical memory")
        #expect(instance.log.snapshot.map(\.message) == ["probe created"], "completion worked, logging arrives")

        // A pinned registration: unmovable, unreclaimable, and the device's
        // writes reach the file through unpin's dirty report.
        let binding = try instance.attach(addressSpace: space.id, start: base, length: 4 * 4096, pinned: true)
        #expect(machine.memory.allocatedFrames().filter { $0.pins == 1 }.count == 4)
        if case .pinned = machine.migrate(space, address: base, to: 1) {} else { Issue.record("a pinned page must not move") }
        // Reclaim unmaps pinned file pages (Linux's try_to_unmap_one does),
        // but cannot free them: the pins hold them in the page cache.
        #expect(try machine.pageOut(space, start: base, length: 4 * 4096) == 0)
        #expect((0..<4).allSatisfy { !space.translate(base + UInt64($0) * 4096).isPresent }, "unmapped, still cached")
        var bytes: [UInt8] = [7, 7, 7]
        try bytes.withUnsafeMutableBytes { try instance.access(binding, deviceAddress: base, write: true, buffer: $0) }
        machine.writeback(file)
        instance.detach(binding)
        #expect(machine.memory.allocatedFrames().allSatisfy { $0.pins == 0 }, "no pin leak")
        #expect(machine.dropCaches() >= 4, "unpinned, the unmapped cache pages can go")
        #expect(file.storedBytes(at: 0)[0...2] == [7, 7, 7])

        // The shrinker is asked when reclaim runs.
        let ballast = try space.map(length: 400 * 4096, kind: .anonymousPrivate)
        try space.populate(start: ballast, length: 400 * 4096, write: true)
        let stats = Dictionary(uniqueKeysWithValues: instance.statistics().map { ($0.name, $0.value) })
        #expect(stats["shrinker scans", default: 0] > 0 && stats["cached objects", default: 1000] < 1000, "\(stats)")

        instance.destroy()
        #expect(machine.shrinkers.registered.isEmpty)
        space.exit()
        machine.dropCaches()
        #expect(machine.memory.freeFrames == 256 - file.cachedPages, "only the file's own page cache remains")
        #expect(machine.violations.count == 0)
    }
}
