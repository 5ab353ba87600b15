import LabSync
import MMUNotifier
import Synchronization
import Testing
@testable import VirtualMemory

/// Device-exclusive entries (issue 20, item 3): a device takes a page
/// exclusive for its atomics under an `exclusive` invalidation carrying its
/// owner; any CPU access gives the page back under an `exclusive`
/// invalidation without one, and the device's exclusive translation is
/// stale from then on.
@Suite("Device-exclusive entries")
struct DeviceExclusiveTests {
    let owner = OwnerCookie(77)

    func setUp(swap: Int = 64) throws -> (Machine, AddressSpace, UInt64, ProbeDevice, ProbeDevice) {
        let machine = makeMachine(swapSlots: swap)
        let space = machine.makeAddressSpace()
        let base = try space.map(length: 4 * page, kind: .anonymousPrivate)
        try space.write(base, [1, 2, 3, 4])
        let gpu = ProbeDevice(machine, space)
        let other = ProbeDevice(machine, space)
        try space.notifiers.register(gpu)
        try space.notifiers.register(other)
        return (machine, space, base, gpu, other)
    }

    @Test("taking a page exclusive tells the others with the owner; the CPU's access gives it back, told without one")
    func takeAndGiveBack() throws {
        let (machine, space, base, gpu, other) = try setUp()
        let t = try space.makeExclusive(base, device: try #require(gpu.device), owner: owner)
        #expect(t.exclusive && t.writable && space.translate(base).isDeviceExclusive)
        #expect(other.starts.withLock { $0.map(\.event) } == [.exclusive])
        #expect(other.starts.withLock { $0.first?.owner } == owner, "the owner lets the device skip its own conversion")
        // The holder's atomics go to the page.
        machine.dmaWrite(space, t, [9, 9], issuer: gpu.device)
        #expect(machine.violations.count == 0, "\(machine.violations.snapshot)")
        // The CPU reads: the page comes back, with what the device wrote.
        #expect(try Array(space.read(base).prefix(2)) == [9, 9])
        let back = space.translate(base)
        #expect(back.isAccessible && back.isWritable && back.isDirty, "\(back)")
        let restore = try #require(other.starts.withLock { $0.last })
        #expect(restore.event == .exclusive && restore.owner == nil)
        #expect(machine.statistics.exclusiveGivenBack.load(ordering: .relaxed) == 1)
        // The holder keeps using its exclusive translation: stale.
        machine.dmaWrite(space, t, [5], issuer: gpu.device)
        #expect(machine.violations.snapshot.map(\.kind) == [.staleTranslation])
    }

    @Test("while a page is exclusive, only its holder reaches it; another device's old translation is stale once it acknowledged")
    func onlyTheHolderReachesIt() throws {
        let (machine, space, base, gpu, other) = try setUp()
        try other.take(base, write: false)
        _ = try space.makeExclusive(base, device: try #require(gpu.device), owner: owner)
        other.read()
        #expect(machine.violations.snapshot.map(\.kind) == [.staleTranslation])
        // The holder's normal translation of the same frame (it skipped its
        // own conversion) still reaches the page: the frame did not move.
        let normal = DeviceTranslation(
            address: base, frame: PageFrameNumber(space.translate(base).frame), generation: machine.memory.generation(of: space.translate(base).frame),
            writable: true, pinned: false)
        _ = machine.dmaRead(space, normal, issuer: gpu.device)
        #expect(machine.violations.count == 1)
    }

    @Test("an untouched page is faulted in writable first, and a copy-on-write page is copied first")
    func faultsInWritable() throws {
        let (_, space, base, gpu, _) = try setUp()
        let fresh = try space.makeExclusive(base + page, device: try #require(gpu.device), owner: owner)
        #expect(fresh.frame.frame != space.machine.zeroFrame && space.translate(base + page).isDeviceExclusive)
        try space.write(base + 3 * page, [3])
        let child = try space.fork()
        defer { child.exit() }
        let before = space.translate(base + 3 * page).frame
        let copied = try space.makeExclusive(base + 3 * page, device: try #require(gpu.device), owner: owner)
        #expect(copied.frame.frame != before, "copy-on-write broken first")
        #expect(try child.read(base + 3 * page).first == 3)
    }

    @Test("fork gives an exclusive page back first (the child never gets it exclusive), under fork's own invalidation")
    func forkGivesItBack() throws {
        let (machine, space, base, gpu, _) = try setUp()
        let t = try space.makeExclusive(base, device: try #require(gpu.device), owner: owner)
        let child = try space.fork()
        defer { child.exit() }
        #expect(!space.translate(base).isDeviceExclusive && !child.translate(base).isDeviceExclusive)
        #expect(gpu.events.last == .writeProtect)
        machine.dmaWrite(space, t, [1], issuer: gpu.device)
        #expect(machine.violations.snapshot.map(\.kind) == [.staleTranslation])
    }

    @Test("reclaim unmaps an exclusive page like any mapped page: the holder hears vmscan and must let go")
    func reclaimTakesItToo() throws {
        let (machine, space, base, gpu, _) = try setUp()
        let t = try space.makeExclusive(base, device: try #require(gpu.device), owner: owner)
        #expect(try machine.pageOut(space, start: base, length: page) == 1)
        #expect(gpu.events.last == .vmscan && space.translate(base).isSwap)
        _ = machine.dmaRead(space, t, issuer: gpu.device)
        #expect(machine.violations.snapshot.map(\.kind) == [.useAfterFree])
        #expect(try space.read(base).prefix(4) == [1, 2, 3, 4], "its data went to swap")
    }

    @Test("another device's fault on an exclusive page gives it back, as a CPU access does")
    func anotherDevicesFaultGivesItBack() throws {
        let (machine, space, base, gpu, other) = try setUp()
        _ = try space.makeExclusive(base, device: try #require(gpu.device), owner: owner)
        try other.take(base, write: false)
        #expect(!space.translate(base).isDeviceExclusive)
        other.read()
        #expect(machine.violations.count == 0)
        #expect(gpu.starts.withLock { $0.last.map { $0.event == .exclusive && $0.owner == nil } } == true)
    }
}
