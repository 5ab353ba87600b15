import LabSync
import MMUNotifier
import Testing
@testable import VirtualMemory

/// A subscriber that checks the ordering on every callback: at start the
/// PTEs of the range still map what they mapped; at end the old frames are
/// not yet freed. (The second holds only with memory to spare: under
/// pressure a zap frees full mmu_gather batches inside the bracket, as
/// Linux does. The tests that use this probe have plenty of free frames.)
final class OrderingProbe: AddressSpaceSubscriber, @unchecked Sendable {
    let space: AddressSpace
    let machine: Machine
    let log: SpinLocked<[String]>
    let seen: SpinLocked<[InvalidationRange]>
    /// Frames (and generations) mapped in the range when its start arrived.
    let atStart: SpinLocked<[InvalidationRange: [(Int32, UInt32)]]>

    init(space: AddressSpace, machine: Machine) {
        self.space = space
        self.machine = machine
        log = SpinLocked([], name: "probe log", domain: machine.sync)
        seen = SpinLocked([], name: "probe seen", domain: machine.sync)
        atStart = SpinLocked([:], name: "probe start", domain: machine.sync)
    }

    var problems: [String] { log.withLock { $0 } }
    var ranges: [InvalidationRange] { seen.withLock { $0 } }
    var events: [NotifierEvent] { ranges.map(\.event) }

    func invalidateRangeStart(_ range: InvalidationRange) -> StartResult {
        seen.withLock { $0.append(range) }
        var frames: [(Int32, UInt32)] = []
        var address = range.start
        while address < min(range.end, range.start + 64 * 4096) {
            let pte = space.translate(address)
            if pte.isPresent { frames.append((pte.frame, machine.memory.generation(of: pte.frame))) }
            address += 4096
        }
        atStart.withLock { $0[range] = frames }
        return .ok
    }

    func invalidateRangeEnd(_ range: InvalidationRange) {
        let frames = atStart.withLock { $0.removeValue(forKey: range) } ?? []
        for (frame, generation) in frames where machine.memory.generation(of: frame) != generation {
            log.withLock { $0.append("frame \(frame) was freed before the end of \(range)") }
        }
    }
}

@Suite("Primary MMU operations")
struct OperationTests {
    @Test func zeroFillWriteReadAndMunmapFreesEverything() throws {
        let machine = makeMachine()
        let space = machine.makeAddressSpace()
        let probe = OrderingProbe(space: space, machine: machine)
        try space.notifiers.register(probe)
        let base = try space.map(length: 8 * page, kind: .anonymousPrivate)
        #expect(try space.read(base) == [UInt8](repeating: 0, count: 16), "anonymous memory reads as zeroes")
        let zeroMapped = space.translate(base)
        #expect(zeroMapped.isPresent && !zeroMapped.isWritable && zeroMapped.frame == machine.zeroFrame,
            "a read of untouched memory maps the shared zero page read-only (do_anonymous_page)")
        #expect(space.residentPages.load(ordering: .relaxed) == 0 && machine.memory.freeFrames == 256, "the zero page is nobody's frame")
        for i in 0..<8 { try space.write(base + UInt64(i) * page, Tag(space: 1, page: UInt32(i), writer: 0, version: 1).bytes) }
        for i in 0..<8 { #expect(Tag(try space.read(base + UInt64(i) * page)) == Tag(space: 1, page: UInt32(i), writer: 0, version: 1)) }
        #expect(space.residentPages.load(ordering: .relaxed) == 8)
        try space.unmap(start: base, length: 8 * page)
        #expect(probe.events == [.cowBreak, .munmap], "the first write replaced the zero page under a CLEAR-type invalidation")
        #expect(probe.problems.isEmpty, "\(probe.problems)")
        #expect(space.residentPages.load(ordering: .relaxed) == 0)
        #expect(machine.memory.freeFrames == 256)
        #expect(throws: MemoryError.segmentationFault(base)) { try space.read(base) }
    }

    @Test func partialMunmapSplitsTheMapping() throws {
        let machine = makeMachine()
        let space = machine.makeAddressSpace()
        let base = try space.map(length: 4 * page, kind: .anonymousPrivate)
        for i in 0..<4 { try space.write(base + UInt64(i) * page, [UInt8(i + 1)]) }
        try space.unmap(start: base + page, length: 2 * page)
        #expect(space.mappings.count == 2)
        #expect(try space.read(base)[0] == 1)
        #expect(try space.read(base + 3 * page)[0] == 4)
        #expect(throws: MemoryError.segmentationFault(base + page)) { try space.read(base + page) }
    }

    @Test func forkSharesCopyOnWriteAndWritesDiverge() throws {
        let machine = makeMachine()
        let parent = machine.makeAddressSpace()
        let probe = OrderingProbe(space: parent, machine: machine)
        try parent.notifiers.register(probe)
        let base = try parent.map(length: 2 * page, kind: .anonymousPrivate)
        try parent.write(base, [1, 1])
        let child = try parent.fork()
        #expect(probe.events == [.writeProtect], "fork write-protects the parent's private pages")
        #expect(parent.translate(base).frame == child.translate(base).frame)
        #expect(!parent.translate(base).isWritable)
        try child.write(base, [2, 2])
        #expect(try parent.read(base)[0...1] == [1, 1])
        #expect(try child.read(base)[0...1] == [2, 2])
        try parent.write(base, [3, 3])
        #expect(probe.events.contains(.cowBreak) || machine.statistics.cowReuses.load(ordering: .relaxed) > 0)
        #expect(try parent.read(base)[0] == 3)
        #expect(try child.read(base)[0] == 2)
        #expect(probe.problems.isEmpty)
        child.exit()
        parent.exit()
        #expect(machine.memory.freeFrames == 256)
    }

    @Test func writingASharedCopyOnWritePageSendsCowBreak() throws {
        let machine = makeMachine()
        let parent = machine.makeAddressSpace()
        let base = try parent.map(length: page, kind: .anonymousPrivate)
        try parent.write(base, [9])
        let child = try parent.fork()
        let probe = OrderingProbe(space: child, machine: machine)
        try child.notifiers.register(probe)
        try child.write(base, [7])
        #expect(probe.events == [.cowBreak])
        #expect(machine.statistics.cowCopies.load(ordering: .relaxed) == 1)
        #expect(probe.problems.isEmpty)
        child.exit()
        parent.exit()
    }

    @Test func mprotectWriteProtectsAndFaultsWrites() throws {
        let machine = makeMachine()
        let space = machine.makeAddressSpace()
        let probe = OrderingProbe(space: space, machine: machine)
        try space.notifiers.register(probe)
        let base = try space.map(length: 2 * page, kind: .anonymousPrivate)
        try space.write(base, [5])
        try space.protect(start: base, length: 2 * page, .read)
        #expect(probe.events == [.mprotect])
        #expect(!space.translate(base).isWritable)
        #expect(throws: MemoryError.protectionFault(base)) { try space.write(base, [6]) }
        #expect(try space.read(base)[0] == 5)
        try space.protect(start: base, length: page, .readWrite)
        try space.write(base, [6])
        #expect(try space.read(base)[0] == 6)
        #expect(space.mappings.count == 2, "mprotect of part of a mapping splits it")
    }

    @Test func mremapMovesThePagesAndInvalidatesTheOldRange() throws {
        let machine = makeMachine()
        let space = machine.makeAddressSpace()
        let probe = OrderingProbe(space: space, machine: machine)
        try space.notifiers.register(probe)
        let base = try space.map(length: 4 * page, kind: .anonymousPrivate)
        for i in 0..<4 { try space.write(base + UInt64(i) * page, [UInt8(10 + i)]) }
        let frames = (0..<4).map { space.translate(base + UInt64($0) * page).frame }
        let target = base + 0x1000_0000
        try space.remap(from: base, length: 4 * page, to: target)
        #expect(probe.ranges.map(\.event) == [.mremap])
        #expect(probe.ranges[0].start == base)
        #expect((0..<4).map { space.translate(target + UInt64($0) * page).frame } == frames, "the frames move with the pages")
        for i in 0..<4 { #expect(try space.read(target + UInt64(i) * page)[0] == UInt8(10 + i)) }
        #expect(throws: MemoryError.segmentationFault(base)) { try space.read(base) }
        // The rmap still finds the moved pages: reclaim can unmap them.
        #expect(try machine.pageOut(space, start: target, length: 4 * page) == 4)
        for i in 0..<4 { #expect(try space.read(target + UInt64(i) * page)[0] == UInt8(10 + i)) }
    }

    @Test func dontNeedZeroesAnonymousAndRereadsFileMemory() throws {
        let machine = makeMachine()
        let space = machine.makeAddressSpace()
        let probe = OrderingProbe(space: space, machine: machine)
        try space.notifiers.register(probe)
        let anon = try space.map(length: page, kind: .anonymousPrivate)
        try space.write(anon, [1, 2, 3])
        try space.adviseDontNeed(start: anon, length: page)
        #expect(try space.read(anon)[0...2] == [0, 0, 0])
        let file = machine.makeFile(named: "data", pages: 4)
        let shared = try space.map(length: 4 * page, kind: .fileShared, file: file)
        try space.write(shared, [7, 7])
        try space.adviseDontNeed(start: shared, length: 4 * page)
        #expect(try space.read(shared)[0...1] == [7, 7], "the page cache keeps the data")
        #expect(probe.events == [.madviseDontNeed, .madviseDontNeed])
        #expect(probe.problems.isEmpty)
    }

    @Test func sharedMappingsSeeEachOthersWrites() throws {
        let machine = makeMachine()
        let a = machine.makeAddressSpace()
        let b = machine.makeAddressSpace()
        let file = machine.makeFile(named: "shared", pages: 2)
        let inA = try a.map(length: 2 * page, kind: .fileShared, file: file)
        let inB = try b.map(length: 2 * page, kind: .fileShared, file: file)
        try a.write(inA + page, [42])
        #expect(try b.read(inB + page)[0] == 42)
        #expect(a.translate(inA + page).frame == b.translate(inB + page).frame)
        let shm = try a.map(length: page, kind: .anonymousShared)
        try a.write(shm, [1])
        let child = try a.fork()
        try child.write(shm, [2])
        #expect(try a.read(shm)[0] == 2, "anonymous shared memory stays shared across fork")
        child.exit()
        a.exit()
        b.exit()
    }

    @Test func writebackWriteProtectsAndStoresTheData() throws {
        let machine = makeMachine()
        let space = machine.makeAddressSpace()
        let probe = OrderingProbe(space: space, machine: machine)
        try space.notifiers.register(probe)
        let file = machine.makeFile(named: "log", pages: 1)
        let base = try space.map(length: page, kind: .fileShared, file: file)
        try space.write(base, [1, 2, 3, 4])
        #expect(file.storedBytes(at: 0)[0...3] == [0, 0, 0, 0])
        #expect(machine.writeback(file) == 1)
        #expect(file.storedBytes(at: 0)[0...3] == [1, 2, 3, 4])
        #expect(probe.events == [.writeProtect])
        #expect(!space.translate(base).isWritable, "the next write must fault and dirty the page again")
        #expect(machine.writeback(file) == 0, "a clean page is not written again")
        try space.write(base, [5])
        #expect(machine.writeback(file) == 1)
        #expect(file.storedBytes(at: 0)[0] == 5)
    }

    @Test func softDirtyTracksWritesSinceTheLastClear() throws {
        let machine = makeMachine()
        let space = machine.makeAddressSpace()
        let probe = OrderingProbe(space: space, machine: machine)
        try space.notifiers.register(probe)
        let base = try space.map(length: 4 * page, kind: .anonymousPrivate)
        for i in 0..<4 { try space.write(base + UInt64(i) * page, [1]) }
        #expect(space.softDirtyPages(start: base, length: 4 * page).count == 4)
        try space.clearSoftDirty()
        #expect(probe.events == [.softDirty])
        #expect(space.softDirtyPages(start: base, length: 4 * page).isEmpty)
        try space.write(base + 2 * page, [2])
        #expect(space.softDirtyPages(start: base, length: 4 * page) == [base + 2 * page])
    }

    @Test func exitReleasesBeforeTearingDownAndFreesEverything() throws {
        final class ReleaseProbe: AddressSpaceSubscriber, @unchecked Sendable {
            let space: AddressSpace
            let mappedAtRelease = SpinLocked<Int?>(nil, name: "probe", domain: SyncDomain())
            init(space: AddressSpace) { self.space = space }
            func invalidateRangeStart(_ range: InvalidationRange) -> StartResult { .ok }
            func invalidateRangeEnd(_ range: InvalidationRange) {}
            func release(addressSpace: AddressSpaceID) {
                let mapped = space.mappedFrames().count
                mappedAtRelease.withLock { $0 = mapped }
            }
        }
        let machine = makeMachine()
        let space = machine.makeAddressSpace()
        let probe = ReleaseProbe(space: space)
        try space.notifiers.register(probe)
        let base = try space.map(length: 4 * page, kind: .anonymousPrivate)
        try space.populate(start: base, length: 4 * page, write: true)
        space.exit()
        #expect(probe.mappedAtRelease.withLock { $0 } == 4, "release comes before the teardown")
        #expect(machine.memory.freeFrames == 256)
        #expect(machine.addressSpaces.isEmpty)
        #expect(throws: MemoryError.exited) { try space.read(base) }
    }
}
