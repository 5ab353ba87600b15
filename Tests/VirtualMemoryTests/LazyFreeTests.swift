import LabSync
import MMUNotifier
import Testing
@testable import VirtualMemory

/// MADV_FREE (issue 20, item 2): lazily freed anonymous pages are
/// discarded by reclaim only while clean; a write after MADV_FREE, by the
/// CPU or by a device that reports it, keeps the data; a device write
/// nobody reports is lost with the page.
@Suite("MADV_FREE")
struct LazyFreeTests {
    let bytes: [UInt8] = [7, 7, 7, 7]
    let zeros = [UInt8](repeating: 0, count: 16)

    /// A machine (no swap: reclaim can only discard or keep), a space with
    /// `pages` written pages, and a recording subscriber.
    func written(pages: Int = 4, swap: Int = 0) throws -> (Machine, AddressSpace, UInt64, MirrorDevice) {
        let machine = makeMachine(swapSlots: swap)
        let space = machine.makeAddressSpace()
        let base = try space.map(length: UInt64(pages) * page, kind: .anonymousPrivate)
        for p in 0..<UInt64(pages) { try space.write(base + p * page, bytes) }
        let device = MirrorDevice("mirror", machine: machine, space: space, capabilities: [])
        try space.notifiers.register(device)
        return (machine, space, base, device)
    }

    @Test("a clean lazily freed page is discarded by reclaim and reads back as zeroes; the secondaries hear of both")
    func cleanPagesAreDiscarded() throws {
        let (machine, space, base, device) = try written()
        try space.adviseFree(start: base, length: 4 * page)
        #expect(device.events == [.madviseFree])
        let pte = space.translate(base)
        #expect(pte.isPresent && !pte.isDirty && !pte.isAccessed && pte.isWritable, "MADV_FREE keeps the page mapped, clean, old, writable: \(pte)")
        #expect(machine.memory.flags(of: pte.frame).contains(.lazyFree))
        #expect(try machine.pageOut(space, start: base, length: 4 * page) == 4)
        #expect(device.events.filter { $0 == .vmscan }.count == 4)
        #expect(space.translate(base).isNone, "discarded, not swapped (there is no swap)")
        #expect(try space.read(base) == zeros)
        #expect(machine.statistics.lazyFreeDiscards.load(ordering: .relaxed) == 4)
    }

    @Test("a CPU write after MADV_FREE keeps the data through reclaim, and the page is swap-backed again")
    func aCPUWriteKeepsTheData() throws {
        let (machine, space, base, _) = try written()
        try space.adviseFree(start: base, length: 4 * page)
        try space.write(base, [9, 9])
        #expect(try machine.pageOut(space, start: base, length: 4 * page) == 3, "the three clean pages go")
        #expect(try Array(space.read(base).prefix(2)) == [9, 9])
        #expect(!machine.memory.flags(of: space.translate(base).frame).contains(.lazyFree))
        #expect(machine.statistics.lazyFreeRedirtied.load(ordering: .relaxed) == 1)
    }

    @Test("a device write after MADV_FREE is kept when the device reports it dirty, and lost when it does not")
    func aDeviceWriteNeedsItsDirtyReport() throws {
        for reports in [true, false] {
            let (machine, space, base, _) = try written(pages: 1)
            try space.adviseFree(start: base, length: page)
            // A write fault on the writable, clean PTE does not fault: the
            // device gets a writable translation to a clean page.
            let t = try space.faultRange(start: base, length: page, write: true)[0]
            #expect(t.writable && !space.translate(base).isDirty)
            machine.dmaWrite(space, t, [5, 5, 5, 5])
            if reports { machine.setDirty(t.frame) }
            _ = try machine.pageOut(space, start: base, length: page)
            let back = try Array(space.read(base).prefix(4))
            #expect(back == (reports ? [5, 5, 5, 5] : [0, 0, 0, 0]), "reported dirty: \(reports), read back \(back)")
            #expect(machine.violations.count == 0, "the write itself was legal: \(machine.violations.snapshot)")
        }
    }

    @Test("MADV_FREE frees the swap entries of the range: the page reads back as zeroes")
    func swapEntriesAreFreed() throws {
        let (machine, space, base, _) = try written(pages: 2, swap: 64)
        #expect(try machine.pageOut(space, start: base, length: 2 * page) == 2)
        #expect(space.translate(base).isSwap)
        let used = machine.swap.usedSlots
        try space.adviseFree(start: base, length: 2 * page)
        #expect(space.translate(base).isNone && machine.swap.usedSlots == used - 2)
        #expect(try space.read(base) == zeros)
    }

    @Test("a swapped-in page leaves the swap cache when MADV_FREE marks it, and is then discarded, not written")
    func aSwapCachedPageLeavesTheCache() throws {
        let (machine, space, base, _) = try written(pages: 1, swap: 64)
        _ = try machine.pageOut(space, start: base, length: page)
        #expect(try Array(space.read(base).prefix(4)) == bytes)  // swapped in, still in the swap cache
        #expect(machine.memory.flags(of: space.translate(base).frame).contains(.swapCache))
        try space.adviseFree(start: base, length: page)
        let frame = space.translate(base).frame
        #expect(!machine.memory.flags(of: frame).contains(.swapCache) && machine.memory.flags(of: frame).contains(.lazyFree))
        #expect(machine.swap.usedSlots == 0)
        let writes = machine.swap.writes
        #expect(try machine.pageOut(space, start: base, length: page) == 1)
        #expect(machine.swap.writes == writes && space.translate(base).isNone)
    }

    @Test("a page shared with a forked child is left alone (Linux skips it); the child's exit leaves it exclusive again")
    func sharedPagesAreLeftAlone() throws {
        let (machine, space, base, _) = try written(pages: 1)
        let child = try space.fork()
        try space.adviseFree(start: base, length: page)
        #expect(!machine.memory.flags(of: space.translate(base).frame).contains(.lazyFree))
        child.exit()
        try space.adviseFree(start: base, length: page)
        #expect(machine.memory.flags(of: space.translate(base).frame).contains(.lazyFree))
    }

    @Test("MADV_FREE of a file mapping is refused (EINVAL), of an unmapped hole a segmentation fault; nothing changes")
    func onlyPrivateAnonymousMemory() throws {
        let machine = makeMachine()
        let space = machine.makeAddressSpace()
        let file = machine.makeFile(named: "f", pages: 2)
        let base = try space.map(length: 2 * page, kind: .fileShared, file: file)
        try space.write(base, bytes)
        #expect(throws: MemoryError.self) { try space.adviseFree(start: base, length: 2 * page) }
        #expect(throws: MemoryError.segmentationFault(base + 2 * page)) { try space.adviseFree(start: base + 2 * page, length: page) }
        #expect(space.translate(base).isDirty)
    }

    @Test("lazily freed pages go to the inactive file LRU, and reclaim under pressure discards them")
    func reclaimPrefersThem() throws {
        let machine = makeMachine(frames: 128, swapSlots: 512)
        let space = machine.makeAddressSpace()
        let freed = try space.map(length: 48 * page, kind: .anonymousPrivate)
        try space.populate(start: freed, length: 48 * page, write: true)
        try space.adviseFree(start: freed, length: 48 * page)
        let counts = machine.memory.nodes[0].lruCounts
        #expect(counts[.inactiveFile] == 48, "\(counts)")
        let other = try space.map(length: 100 * page, kind: .anonymousPrivate)
        try space.populate(start: other, length: 100 * page, write: true)
        #expect(machine.statistics.lazyFreeDiscards.load(ordering: .relaxed) > 0)
        #expect(space.mappedFrames().count <= 128)
    }
}
