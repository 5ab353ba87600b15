import LabSync
import MMUNotifier
import PluginHost
import Testing
import TestSupport
import VirtualMemory

/// One fixture plugin taken through a binding's life on its own machine:
/// create, attach over 16 written pages, a few device reads and writes, an
/// invalidation, detach, destroy, exit. Every misuse must be refused and
/// reported, everything left behind undone: the host survives and gets
/// every frame back.
struct SafetyRun {
    let violations: [PluginContractViolation]
    let machine: Machine
    /// The instance's counters after detach, and after an unmap that came later.
    let afterDetach: [String: UInt64]
    let afterUnmap: [String: UInt64]

    static let pages = 16

    init(_ name: String, lockOrder: Bool = false) throws {
        let plugin = try load(fixture(name))
        let machine = Machine(
            .init(memory: .init(frames: 512, nodes: 1, payloadSize: 16), swapSlots: 4096),
            notifierCore: NotifierCore(sync: SyncDomain(lockOrder: lockOrder)))
        let space = machine.makeAddressSpace()
        let length = UInt64(Self.pages) * 4096
        let base = try space.map(length: length, kind: .anonymousPrivate)
        try space.populate(start: base, length: length, write: true)
        let instance = try PluginInstance.create(plugin, machine: machine, label: "\(name)#0").get()
        let binding = try instance.attach(addressSpace: space.id, start: base, length: length)
        var buffer = [UInt8](repeating: 7, count: 16)
        for page in 4..<8 {
            let address = binding.deviceAddress + UInt64(page) * 4096
            try buffer.withUnsafeMutableBytes { try instance.access(binding, deviceAddress: address, write: page % 2 == 0, buffer: $0) }
        }
        _ = try machine.pageOut(space, start: base + 5 * 4096, length: 4096)
        instance.detach(binding)
        func counters() -> [String: UInt64] { Dictionary(uniqueKeysWithValues: instance.statistics().map { ($0.name, $0.value) }) }
        afterDetach = counters()
        // The second half only: what a device memory holds of the first half stays for destroy to meet.
        try space.unmap(start: base + length / 2, length: length / 2)
        afterUnmap = counters()
        instance.destroy()
        space.exit()
        _ = machine.dropCaches()
        violations = instance.violations.snapshot
        self.machine = machine
    }

    /// The violations of `kind` in `service` whose problem says `text`.
    func reported(_ kind: PluginContractViolation.Kind, _ service: String, _ text: String) -> [PluginContractViolation] {
        violations.filter { $0.kind == kind && $0.service == service && $0.problem.contains(text) }
    }

    /// Every frame is free again: nothing a plugin did kept one.
    var everyFrameFree: Bool { machine.memory.freeFrames == 512 }
}

@Suite("A plugin cannot crash the host: misuse is a finding")
struct PluginMisuseTests {
    /// Each fixture's mistakes: the service and what its report says.
    static let misuses: [(fixture: String, expected: [(service: String, says: String)])] = [
        ("foreign-pfn", [
            ("set_dirty", "pfn#4294967296 is not a frame of this machine"), ("mark_accessed", "is not a frame of this machine"),
            ("dma_read", "is not a frame of this machine"), ("dma_write", "is not a frame of this machine"),
            ("unpin", "is not a frame of this machine"), ("dma_read", "was never handed out"),
        ]),
        ("double-unpin", [("unpin", "is not pinned by this instance (unpinned already")]),
        ("over-unpin", [("unpin", "entry 2: pfn#"), ("unpin", "entry 3: pfn#")]),
        ("unpin-unpinned", [("unpin", "is not a pinned translation")]),
        ("free-foreign-page", [("free_page_table_page", "is not a page-table page")]),
        ("double-free-page", [("free_page_table_page", "was freed already (a double free)")]),
        ("destroyed-lock", [
            ("lock", "'spare lock' was destroyed"), ("unlock", "is not held by this thread"), ("trylock", "'spare lock' was destroyed"),
            ("lock_destroy", "'spare lock' was destroyed already"),
        ]),
        ("destroyed-completion", [
            ("completion_complete", "was destroyed"), ("completion_wait", "was destroyed"), ("completion_destroy", "was destroyed already"),
        ]),
        ("foreign-unlock", [("unlock", "'device lock' is not held by this thread")]),
        ("set-seq-outside", [("interval_set_seq", "called outside the invalidate callback")]),
        ("double-remove", [("interval_remove", "was removed already")]),
        ("null-pointers", [
            ("set_dirty", "the pfn pointer is NULL"), ("mark_accessed", "the pfn pointer is NULL"), ("dma_read", "the pfn pointer is NULL"),
            ("unpin", "the pfn array is NULL"), ("lock", "the lock is NULL"), ("unlock", "the lock is NULL"),
            ("interval_read_begin", "the interval is NULL"), ("completion_complete", "the completion is NULL"),
            ("set_dirty", "called with a NULL context"),
        ]),
        ("bad-exclusive", [
            ("make_exclusive", "the pfn is NULL"), ("make_exclusive", "is not a page-aligned address inside the address space"),
            ("make_exclusive", "0x4000000000000000 is not a page-aligned address"), ("make_exclusive", "does not exist"),
        ]),
        ("bad-lookup", [
            ("lookup_range", "the pfn buffer is NULL"), ("lookup_range", "must be page aligned"),
            ("lookup_range", "[0x4000000000000000, +4096) must be page aligned"), ("lookup_range", "does not exist"),
            ("dma_read", "an entry lookup_range found nothing at (MMULAB_PFN_NONE) is not a translation"),
        ]),
        ("bad-reference", [
            ("page_get", "the pfn pointer is NULL"), ("page_put", "holds no reference of this instance (put already, or never taken)"),
            ("dma_read", "MMULAB_PFN_REFERENCED on pfn#"),
        ]),
    ]

    @Test("each misuse is refused and reported, naming the plugin, the service and what was wrong", arguments: misuses.map(\.fixture))
    func misuseIsReported(fixture: String) throws {
        let run = try SafetyRun(fixture)
        let expected = Self.misuses.first { $0.fixture == fixture }!.expected
        for (service, says) in expected {
            let found = run.reported(.misuse, service, says)
            #expect(!found.isEmpty, "\(fixture): no '\(service)' report saying '\(says)' in \(run.violations)")
            #expect(found.allSatisfy { $0.plugin == "\(fixture)#0" }, "named by its label: \(found)")
        }
        #expect(run.violations.allSatisfy { $0.kind == .misuse }, "\(fixture): only misuses: \(run.violations)")
        #expect(run.everyFrameFree, "\(fixture): \(run.machine.memory.allocatedFrames().prefix(4))")
        #expect(run.machine.violations.count == 0, "\(fixture): the refused DMA reached nothing: \(run.machine.violations.snapshot.prefix(2))")
    }

    @Test("a misuse inside an operation names the operation and the binding")
    func theReportNamesOperationAndBinding() throws {
        let run = try SafetyRun("unpin-unpinned")
        let report = try #require(run.reported(.misuse, "unpin", "not a pinned translation").first)
        #expect(report.during == "access", "\(report)")
        #expect(report.binding?.hasPrefix("#1: device 0x") == true, "\(report)")
    }
}

@Suite("A plugin cannot crash the host: what it leaves is a finding, and undone")
struct PluginLeakTests {
    static let leaks: [(fixture: String, service: String, summary: String)] = [
        ("leak-subscription", "destroy", "subscription left registered after destroy"),
        ("leak-interval", "detach", "interval left registered after detach"),
        ("leak-shrinker", "destroy", "shrinker left registered after destroy"),
        ("leak-pin", "detach", "pin left after detach"),
        ("leak-page-table-page", "destroy", "page-table page left after destroy"),
        ("leak-device-memory", "destroy", "device memory left in use after destroy"),
    ]

    @Test("each leak is reported with the plugin (and binding), and the host undoes it", arguments: leaks.map(\.fixture))
    func leakIsReportedAndUndone(fixture: String) throws {
        let run = try SafetyRun(fixture)
        let (_, service, summary) = Self.leaks.first { $0.fixture == fixture }!
        let found = run.violations.filter { $0.kind == .leak && $0.summary == summary }
        #expect(found.count == 1, "\(fixture): \(run.violations)")
        #expect(found.first?.service == service && found.first?.plugin == "\(fixture)#0", "\(found)")
        if service == "detach" { #expect(found.first?.binding?.hasPrefix("#1:") == true, "the binding is named: \(found)") }
        #expect(run.violations.count == found.count, "\(fixture): nothing else: \(run.violations)")
        #expect(run.everyFrameFree, "\(fixture): the host gave everything back: \(run.machine.memory.allocatedFrames().prefix(4))")
    }

    @Test("no callback reaches an interval the plugin left behind once detach returned")
    func noCallbackAfterALeakedIntervalIsRemoved() throws {
        let run = try SafetyRun("leak-interval")
        #expect(run.afterUnmap["invalidations"] == run.afterDetach["invalidations"], "before \(run.afterDetach), after \(run.afterUnmap)")
        #expect(run.afterDetach["invalidations", default: 0] > 0, "the interval was called while the binding lived: \(run.afterDetach)")
    }
}

@Suite("Lock order at the plugin boundary")
struct PluginLockRuleTests {
    @Test("a callback that returns holding a lock is reported (lock order validated)")
    func lockHeldAtReturn() throws {
        let run = try SafetyRun("lock-held", lockOrder: true)
        let held = run.violations.filter { $0.kind == .lockHeldAtReturn }
        #expect(held.count == 1, "\(run.violations)")
        #expect(held.first?.service == "attach" && held.first?.problem.contains("'fixture-lock-held: held lock'") == true, "\(held)")
        #expect(run.violations.count == 1, "\(run.violations)")
    }

    @Test("the same run with lock order not validated reports nothing")
    func lockHeldNotValidated() throws {
        let run = try SafetyRun("lock-held")
        #expect(run.violations.isEmpty, "\(run.violations)")
    }

    @Test("the classic inversion with reclaim is found by lock order before anything deadlocks; the consistent order is clean")
    func inversionAndConsistentOrder() throws {
        for (name, inverted) in [("lock-inversion", true), ("lock-ordered", false)] {
            let plugin = try load(fixture(name))
            // Little memory: the device's faults reclaim, and reclaim invalidates the device.
            let machine = Machine(
                .init(memory: .init(frames: 96, nodes: 1, payloadSize: 16), swapSlots: 4096),
                notifierCore: NotifierCore(sync: SyncDomain(lockOrder: true)))
            let space = machine.makeAddressSpace()
            let length: UInt64 = 64 * 4096
            let base = try space.map(length: length, kind: .anonymousPrivate)
            let instance = try PluginInstance.create(plugin, machine: machine, label: "\(name)#0").get()
            let binding = try instance.attach(addressSpace: space.id, start: base, length: length)
            var buffer = [UInt8](repeating: 1, count: 16)
            for round in 0..<3 {
                for page in 0..<64 {
                    try buffer.withUnsafeMutableBytes {
                        try instance.access(binding, deviceAddress: binding.deviceAddress + UInt64(page) * 4096, write: round % 2 == 0, buffer: $0)
                    }
                }
                try space.protect(start: base, length: length, round % 2 == 0 ? .read : [.read, .write])
            }
            instance.detach(binding)
            instance.destroy()
            space.exit()
            let found = try #require(machine.sync.lockOrder).violations.snapshot
            if inverted {
                #expect(!found.isEmpty, "\(name): no inversion found")
                let classes = Set(found.flatMap(\.classes))
                #expect(classes.contains("fixture-lock-inversion: device lock"), "\(found)")
                #expect(found.contains { $0.involvesReclaim || $0.classes.contains("mmap_lock") }, "\(found)")
                #expect(found.allSatisfy { !$0.thisThread.isEmpty && !$0.earlier.isEmpty }, "both chains: \(found)")
            } else {
                #expect(found.isEmpty, "\(name): \(found)")
            }
        }
    }
}
