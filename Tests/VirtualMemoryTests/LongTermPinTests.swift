import LabSync
import MMUNotifier
import Synchronization
import Testing
@testable import VirtualMemory

/// Long-term pins (issue 20, item 5): a FOLL_LONGTERM pin moves a page out
/// of movable memory first (a migrate invalidation), and returns the
/// pinned frames; compaction never takes a pinned page, and tells nobody.
@Suite("Zones and long-term pins")
struct LongTermPinTests {
    /// 256 frames, the upper 192 movable.
    func zoned(frames: Int = 256, movable: Int = 192) -> Machine {
        Machine(.init(memory: .init(frames: frames, movablePerNode: movable), swapSlots: 256))
    }

    @Test("user memory comes from the movable zone first; device page-table pages only from the normal zone")
    func allocationsByZone() throws {
        let machine = zoned()
        let space = machine.makeAddressSpace()
        let base = try space.map(length: 16 * page, kind: .anonymousPrivate)
        try space.populate(start: base, length: 16 * page, write: true)
        #expect(space.mappedFrames().allSatisfy { machine.memory.isMovable($0.frame.frame) })
        let table = try #require(machine.allocateDevicePageTablePage())
        #expect(!machine.memory.isMovable(table.frame))
        machine.freeDevicePageTablePage(table)
        #expect(machine.memory.nodes[0].freeCount(in: .movable) == 192 - 16)
        #expect(!machine.memory.isMovable(machine.zeroFrame))
    }

    @Test("a long-term pin moves a movable page out first, under a migrate invalidation, and pins the new frame")
    func aLongTermPinMovesThePageFirst() throws {
        let machine = zoned()
        let space = machine.makeAddressSpace()
        let base = try space.map(length: 4 * page, kind: .anonymousPrivate)
        for p in 0..<UInt64(4) { try space.write(base + p * page, [UInt8(p + 1)]) }
        let device = MirrorDevice("mirror", machine: machine, space: space, capabilities: [])
        try space.notifiers.register(device)
        let before = (0..<4).map { space.translate(base + UInt64($0) * page).frame }
        // A short-term pin leaves the pages where they are.
        let short = try space.pin(start: base, length: 4 * page, write: true)
        #expect(short.map(\.frame.frame) == before && device.events.isEmpty)
        machine.unpin(short)
        let pinned = try space.pin(start: base, length: 4 * page, write: true, longTerm: true)
        #expect(device.events == [.migrate, .migrate, .migrate, .migrate])
        for (i, t) in pinned.enumerated() {
            #expect(t.pinned && !machine.memory.isMovable(t.frame.frame) && t.frame.frame != before[i])
            #expect(space.translate(base + UInt64(i) * page).frame == t.frame.frame, "the pin returns what the primary maps")
            #expect(machine.memory.pincount(of: t.frame.frame) == 1)
            #expect(machine.memory.generation(of: before[i]) != 1, "the old frame was freed")
            #expect(try space.read(base + UInt64(i) * page).first == UInt8(i + 1))
        }
        #expect(machine.statistics.longTermPinMigrations.load(ordering: .relaxed) == 4)
        // DMA through the pinned translations is legal; through the old ones it is not.
        machine.dmaWrite(space, pinned[0], [9])
        #expect(machine.violations.count == 0)
        machine.dmaWrite(space, short[1], [9])
        #expect(machine.violations.snapshot.map(\.kind) == [.useAfterFree])
        machine.unpin(pinned, dirty: true)
    }

    @Test("a long-term pin of a page already outside movable memory, or of the zero page, moves nothing")
    func nothingToMove() throws {
        let machine = zoned()
        let space = machine.makeAddressSpace()
        let base = try space.map(length: 2 * page, kind: .anonymousPrivate)
        let pinned = try space.pin(start: base, length: 2 * page, write: false, longTerm: true)
        #expect(pinned.allSatisfy { $0.frame.frame == machine.zeroFrame })
        #expect(machine.statistics.longTermPinMigrations.load(ordering: .relaxed) == 0)
        machine.unpin(pinned)
        let again = try space.pin(start: base, length: 2 * page, write: true, longTerm: true)
        let moved = machine.statistics.longTermPinMigrations.load(ordering: .relaxed)
        machine.unpin(again)
        let third = try space.pin(start: base, length: 2 * page, write: true, longTerm: true)
        #expect(machine.statistics.longTermPinMigrations.load(ordering: .relaxed) == moved, "already in the normal zone")
        #expect(third.map(\.frame) == again.map(\.frame))
        machine.unpin(third)
    }

    @Test("a long-term pin that finds no room outside movable memory fails and keeps no pin")
    func noRoomOutsideMovableMemory() throws {
        let machine = zoned(frames: 128, movable: 104)
        let space = machine.makeAddressSpace()
        // Fill the normal zone with kernel pages.
        var tables: [PageFrameNumber] = []
        while let table = machine.allocateDevicePageTablePage() { tables.append(table) }
        let base = try space.map(length: 2 * page, kind: .anonymousPrivate)
        try space.write(base, [1])
        #expect(throws: MemoryError.outOfMemory) { try space.pin(start: base, length: page, write: true, longTerm: true) }
        #expect(machine.memory.pincount(of: space.translate(base).frame) == 0)
        for table in tables { machine.freeDevicePageTablePage(table) }
    }

    @Test("compaction passes a pinned page over before anyone is told; placement migration tells them first")
    func compactionSkipsPinnedPagesUntold() throws {
        let machine = zoned()
        let space = machine.makeAddressSpace()
        let base = try space.map(length: 2 * page, kind: .anonymousPrivate)
        try space.write(base, [1])
        try space.write(base + page, [2])
        let device = MirrorDevice("mirror", machine: machine, space: space, capabilities: [])
        try space.notifiers.register(device)
        let pinned = try space.pin(start: base, length: page, write: true, longTerm: true)
        let movesBefore = device.events.count
        guard case .pinned = machine.migrate(space, address: base, to: 0, reason: .compaction) else {
            Issue.record("compaction moved a pinned page")
            return
        }
        #expect(device.events.count == movesBefore, "no invalidation for a page compaction never isolated")
        #expect(machine.statistics.compactionSkippedPinned.load(ordering: .relaxed) == 1)
        guard case .pinned = machine.migrate(space, address: base, to: 0) else {
            Issue.record("a placement migration moved a pinned page")
            return
        }
        #expect(device.events.count == movesBefore + 1, "migrate_pages tells the secondaries before it finds the pin")
        guard case .migrated = machine.migrate(space, address: base + page, to: 0, reason: .compaction) else {
            Issue.record("compaction did not move an unpinned page")
            return
        }
        #expect(machine.statistics.compactions.load(ordering: .relaxed) == 1)
        machine.unpin(pinned)
    }

    @Test("a pin taken while a migration is under way (from inside its invalidation) calls the migration off: the pin and the PTE keep one frame")
    func aPinRacingAMigrationWins() throws {
        for reason in [MigrationReason.placement, .compaction, .longTermPin] {
            let machine = zoned()
            let space = machine.makeAddressSpace()
            let base = try space.map(length: page, kind: .anonymousPrivate)
            try space.write(base, [4])
            let frame = space.translate(base).frame
            let probe = ProbeDevice(machine, space)
            try space.notifiers.register(probe)
            let pins = Mutex<[DeviceTranslation]>([])
            probe.onStart.withLock { $0 = { _ in
                if let pinned = try? space.pin(start: base, length: page, write: true) { pins.withLock { $0 += pinned } }
            } }
            let result = machine.migrate(space, address: base, to: 0, reason: reason)
            guard case .pinned = result else {
                Issue.record("\(reason): a page pinned during its migration moved: \(result)")
                continue
            }
            let pinned = try #require(pins.withLock { $0.first })
            #expect(pinned.frame.frame == frame && space.translate(base).frame == frame, "\(reason)")
            machine.dmaWrite(space, pinned, [5], issuer: probe.device)
            #expect(try space.read(base).first == 5)
            #expect(machine.violations.count == 0, "\(reason): \(machine.violations.snapshot)")
            machine.unpin([pinned])
        }
    }

    @Test("a write fault on a pinned page reuses it even while someone else (compaction, reclaim) holds it locked: the pin and the PTE keep one frame")
    func aPinnedPageIsReusedNotCopied() throws {
        let machine = zoned()
        let space = machine.makeAddressSpace()
        let base = try space.map(length: page, kind: .anonymousPrivate)
        try space.write(base, [1])
        let pinned = try space.pin(start: base, length: page, write: false, longTerm: true)
        try space.protect(start: base, length: page, .read)
        try space.protect(start: base, length: page, .readWrite)  // read-only until the next write fault
        let frame = pinned[0].frame.frame
        #expect(!space.translate(base).isWritable && space.translate(base).frame == frame)
        #expect(machine.memory.tryLock(frame), "held as compaction or reclaim would hold it")
        machine.memory.get(frame)
        try space.write(base, [2])
        machine.memory.unlock(frame)
        machine.memory.put(frame)
        #expect(space.translate(base).frame == frame, "reused, not copied")
        #expect(machine.dmaRead(space, pinned[0]).first == 2, "the pin sees the CPU's write")
        #expect(machine.violations.count == 0)
        machine.unpin(pinned)
    }

    @Test("a movable zone must leave a normal zone above the high watermark")
    func theZonesAreChecked() {
        #expect(PhysicalMemory.Configuration(frames: 256, movablePerNode: 192).problem == nil)
        #expect(PhysicalMemory.Configuration(frames: 256, movablePerNode: 250).problem?.contains("movable zone") == true)
        #expect(PhysicalMemory.Configuration(frames: 256, movablePerNode: -1).problem != nil)
    }
}
