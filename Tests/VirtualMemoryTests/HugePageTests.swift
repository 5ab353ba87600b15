import LabSync
import MMUNotifier
import Synchronization
import Testing
@testable import VirtualMemory

/// Transparent huge pages (issue 20, item 1): 2 MiB folios with one
/// reference, mapping count and LRU place; split (a hugeSplit over the
/// whole 2 MiB, then the operation's own event) on a partial munmap,
/// mprotect, DONTNEED, on copy-on-write after fork, on swap-out; migrated
/// whole; collapsed from 512 small pages after asking test_young; reported
/// to devices as huge.
@Suite("Transparent huge pages")
struct HugePageTests {
    static let huge = AddressSpace.hugeSize
    static let pages = UInt64(PhysicalMemory.hugePages)

    func thpMachine(frames: Int = 4096, nodes: Int = 1, swap: Int = 4096) -> Machine {
        Machine(.init(memory: .init(frames: frames, nodes: nodes), swapSlots: swap, transparentHugePages: .always))
    }

    /// A space with one 2 MiB-aligned mapping of `blocks` huge pages,
    /// every page written with its number, and a recording device.
    func populated(_ machine: Machine, blocks: UInt64 = 1) throws -> (AddressSpace, UInt64, ProbeDevice) {
        let space = machine.makeAddressSpace()
        let base = try space.map(length: blocks * Self.huge, kind: .anonymousPrivate)
        #expect(base % Self.huge == 0, "a 2 MiB mapping starts on a 2 MiB boundary when THP is on")
        for p in 0..<blocks * Self.pages { try space.write(base + p * page, bytes(p)) }
        let probe = ProbeDevice(machine, space)
        try space.notifiers.register(probe)
        return (space, base, probe)
    }

    func bytes(_ p: UInt64) -> [UInt8] { [UInt8(p & 0xFF), UInt8(p >> 8), 0xAB] }
    func check(_ space: AddressSpace, _ base: UInt64, pages: Range<UInt64>) throws {
        for p in pages { #expect(try Array(space.read(base + p * page).prefix(3)) == bytes(p), "page \(p)") }
    }
    func isHuge(_ space: AddressSpace, _ address: UInt64) -> Bool { space.translate(address).isHuge }
    func ranges(_ probe: ProbeDevice) -> [(NotifierEvent, UInt64, UInt64)] { probe.starts.withLock { $0.map { ($0.event, $0.start, $0.end) } } }

    @Test("a write fault maps a whole huge page: 512 entries, one folio, one mapping count; exit frees it all")
    func aHugeFault() throws {
        let machine = thpMachine()
        let (space, base, _) = try populated(machine)
        let head = machine.memory.head(of: space.translate(base).frame)
        #expect((0..<Self.pages).allSatisfy { isHuge(space, base + $0 * page) && machine.memory.head(of: space.translate(base + $0 * page).frame) == head })
        #expect(machine.memory.mapcount(of: head) == 1 && machine.memory.refcount(of: head) == 1)
        #expect(space.residentPages.load(ordering: .relaxed) == 512 && machine.statistics.hugeFaults.load(ordering: .relaxed) == 1)
        #expect(machine.memory.nodes[0].lruCounts.values.reduce(0, +) == 1, "one LRU place for the folio")
        try check(space, base, pages: 0..<Self.pages)
        space.exit()
        #expect(machine.memory.allocatedFrames().isEmpty, "\(machine.memory.allocatedFrames().prefix(3))")
    }

    @Test("THP off, an unaligned or a non-empty 2 MiB falls back to small pages")
    func fallbacks() throws {
        let never = Machine(.init(memory: .init(frames: 2048), swapSlots: 0))
        let s1 = never.makeAddressSpace()
        let b1 = try s1.map(length: Self.huge, kind: .anonymousPrivate)
        try s1.write(b1, [1])
        #expect(!isHuge(s1, b1))
        let machine = thpMachine()
        let space = machine.makeAddressSpace()
        let base = try space.map(length: 2 * Self.huge, kind: .anonymousPrivate)
        _ = try space.read(base + page)  // the zero page: the 2 MiB is no longer empty
        try space.write(base, [1])
        #expect(!isHuge(space, base))
        try space.write(base + Self.huge, [2])
        #expect(isHuge(space, base + Self.huge))
    }

    @Test("munmap of one page splits the huge page first: a hugeSplit over the whole 2 MiB, then munmap of the page")
    func partialMunmapSplits() throws {
        let machine = thpMachine()
        let (space, base, probe) = try populated(machine)
        let frames = (0..<Self.pages).map { space.translate(base + $0 * page).frame }
        try space.unmap(start: base + 5 * page, length: page)
        #expect(ranges(probe).elementsEqual([(.hugeSplit, base, base + Self.huge), (.munmap, base + 5 * page, base + 6 * page)]) { $0 == $1 })
        #expect(!isHuge(space, base) && machine.statistics.hugeSplits.load(ordering: .relaxed) == 1)
        #expect((0..<Self.pages).filter { $0 != 5 }.allSatisfy { space.translate(base + $0 * page).frame == frames[Int($0)] }, "the frames stay")
        #expect(machine.memory.flags(of: frames[5]) == [], "the unmapped page was freed")
        try check(space, base, pages: 0..<5)
        try check(space, base, pages: 6..<Self.pages)
        #expect(machine.memory.mapcount(of: frames[7]) == 1 && machine.memory.refcount(of: frames[7]) == 1)
        space.exit()
        #expect(machine.memory.allocatedFrames().isEmpty)
    }

    @Test("mprotect of part of a huge page splits it; of the whole 2 MiB keeps it whole")
    func mprotectSplitsOnlyWhenPartial() throws {
        let machine = thpMachine()
        let (space, base, probe) = try populated(machine, blocks: 2)
        try space.protect(start: base, length: Self.huge, .read)
        #expect(ranges(probe).map(\.0) == [.mprotect] && isHuge(space, base) && !space.translate(base).isWritable)
        try space.protect(start: base + Self.huge + 3 * page, length: page, .read)
        #expect(ranges(probe).dropFirst().elementsEqual([(.hugeSplit, base + Self.huge, base + 2 * Self.huge), (.mprotect, base + Self.huge + 3 * page, base + Self.huge + 4 * page)]) { $0 == $1 })
        #expect(isHuge(space, base) && !isHuge(space, base + Self.huge))
        try check(space, base, pages: 0..<2 * Self.pages)
    }

    @Test("DONTNEED of part of a huge page splits it and zaps the part; of the whole frees the folio at once")
    func dontNeed() throws {
        let machine = thpMachine()
        let (space, base, probe) = try populated(machine, blocks: 2)
        try space.adviseDontNeed(start: base, length: Self.huge)
        #expect(ranges(probe).map(\.0) == [.madviseDontNeed] && space.translate(base).isNone)
        let free = machine.memory.freeFrames
        try space.adviseDontNeed(start: base + Self.huge, length: 16 * page)
        #expect(ranges(probe).dropFirst().map(\.0) == [.hugeSplit, .madviseDontNeed])
        #expect(machine.memory.freeFrames == free + 16)
        let zapped = try space.read(base + Self.huge)
        #expect(Array(zapped.prefix(3)) == [0, 0, 0])
        try check(space, base, pages: (Self.pages + 16)..<(2 * Self.pages))
    }

    @Test("copy-on-write of a huge page after fork: the write splits the folio (in both spaces), then copies one page")
    func cowAfterFork() throws {
        let machine = thpMachine()
        let (space, base, probe) = try populated(machine)
        let child = try space.fork()
        defer { child.exit() }
        let head = machine.memory.head(of: space.translate(base).frame)
        #expect(isHuge(child, base) && machine.memory.mapcount(of: head) == 2 && !space.translate(base).isWritable)
        try child.write(base + 9 * page, [0xEE])
        #expect(ranges(probe).map(\.0) == [.writeProtect, .hugeSplit], "the parent hears the fork and the split; the copy is the child's")
        #expect(!isHuge(space, base) && !isHuge(child, base))
        try check(space, base, pages: 0..<Self.pages)
        #expect(try child.read(base + 9 * page).first == 0xEE)
        try space.write(base + 10 * page, [0xDD])  // a page still shared: copied
        let childPage = try child.read(base + 10 * page)
        #expect(Array(childPage.prefix(3)) == bytes(10))
    }

    @Test("a huge page only this mapping maps is reused whole on a write fault (mprotect back to rw)")
    func reuseWhole() throws {
        let machine = thpMachine()
        let (space, base, _) = try populated(machine)
        try space.protect(start: base, length: Self.huge, .read)
        try space.protect(start: base, length: Self.huge, .readWrite)
        try space.write(base + 100 * page, [1])
        #expect(isHuge(space, base) && space.translate(base).isWritable && machine.statistics.hugeSplits.load(ordering: .relaxed) == 0)
    }

    @Test("swap-out splits the huge page: MADV_PAGEOUT pages it out page by page, and it comes back intact")
    func swapOutSplits() throws {
        let machine = thpMachine()
        let (space, base, probe) = try populated(machine)
        #expect(try machine.pageOut(space, start: base, length: Self.huge) == 512)
        #expect(ranges(probe).first.map { $0 == (.hugeSplit, base, base + Self.huge) } == true)
        #expect(ranges(probe).filter { $0.0 == .vmscan }.count == 512)
        #expect(space.translate(base + 7 * page).isSwap)
        try check(space, base, pages: 0..<Self.pages)
    }

    @Test("reclaim ages a huge page as one: a device young anywhere in the 2 MiB keeps the whole folio")
    func agingAtFolioGranularity() throws {
        let machine = thpMachine()
        let (space, base, _) = try populated(machine)
        let young = YoungDevice(young: base + 300 * page)
        try space.notifiers.register(young)
        let head = machine.memory.head(of: space.translate(base).frame)
        _ = space.mappedFrames()  // (reads only)
        #expect(machine.memory.node(of: head).isolate(head, memory: machine.memory))
        #expect(!machine.reclaim(isolated: head), "kept: the device used a page of it")
        #expect(young.asked.withLock { $0 } == [(base, base + Self.huge)].map { "\($0.0)-\($0.1)" })
        #expect(isHuge(space, base))
    }

    @Test("migration moves the whole folio under one migrate invalidation of its 2 MiB")
    func wholeFolioMigration() throws {
        let machine = thpMachine(frames: 4096, nodes: 2)
        let (space, base, probe) = try populated(machine)
        let before = space.translate(base).frame
        guard case .migrated = machine.migrate(space, address: base + 77 * page, to: 1 - machine.memory.node(of: before).id) else {
            Issue.record("the huge page did not migrate")
            return
        }
        #expect(ranges(probe).elementsEqual([(.migrate, base, base + Self.huge)]) { $0 == $1 })
        let after = space.translate(base).frame
        #expect(after != before && machine.memory.node(of: after).id != machine.memory.node(of: before).id && isHuge(space, base))
        #expect(machine.memory.flags(of: before) == [], "the old folio was freed")
        #expect(machine.statistics.hugeMigrations.load(ordering: .relaxed) == 1)
        try check(space, base, pages: 0..<Self.pages)
    }

    @Test("collapse asks test_young: a cold 2 MiB stays small; a young one becomes a huge page under one collapse invalidation")
    func collapse() throws {
        let machine = thpMachine()
        let space = machine.makeAddressSpace()
        let base = try space.map(length: Self.huge, kind: .anonymousPrivate)
        try space.adviseHugePage(start: base, length: Self.huge, enable: false)  // small pages first
        for p in 0..<Self.pages { try space.write(base + p * page, bytes(p)) }
        try space.adviseHugePage(start: base, length: Self.huge, enable: true)
        let young = YoungDevice(young: nil)
        try space.notifiers.register(young)
        let probe = ProbeDevice(machine, space)
        try space.notifiers.register(probe)
        try probe.take(base + 3 * page, write: false)
        // Everything old: the CPU's bits cleared, as reclaim's aging does.
        for frame in space.mappedFrames() { _ = machine.isRecentlyUsed(frame.frame.frame) }
        #expect(machine.collapseScan() == 0 && machine.statistics.hugeCollapsesCold.load(ordering: .relaxed) == 1)
        #expect(young.tested.load(ordering: .relaxed) == 512, "every page asked")
        let old = space.translate(base + 3 * page).frame
        young.youngAddress.withLock { $0 = base + 200 * page }
        #expect(machine.collapseScan() == 1)
        #expect(ranges(probe).elementsEqual([(.collapse, base, base + Self.huge)]) { $0 == $1 })
        #expect((0..<Self.pages).allSatisfy { isHuge(space, base + $0 * page) })
        try check(space, base, pages: 0..<Self.pages)
        #expect(machine.memory.flags(of: old) == [], "the small pages were freed")
        probe.read()
        #expect(machine.violations.snapshot.map(\.kind) == [.useAfterFree], "the device's small-page translation is dead")
        // MADV_COLLAPSE asks nobody: a partly empty 2 MiB collapses too.
        let other = try space.map(length: Self.huge, kind: .anonymousPrivate)
        try space.adviseHugePage(start: other, length: Self.huge, enable: false)
        try space.write(other + 5 * page, [5])
        try space.adviseHugePage(start: other, length: Self.huge, enable: true)
        #expect(try space.adviseCollapse(start: other, length: Self.huge) == 1)
        #expect(isHuge(space, other))
        #expect(try space.read(other + 5 * page).first == 5)
        #expect(try space.read(other).first == 0)
    }

    @Test("devices are told a page is part of a huge page; a pin splits it first; taking a page exclusive splits it")
    func devicesAndHugePages() throws {
        let machine = thpMachine()
        let (space, base, probe) = try populated(machine, blocks: 2)
        let t = try space.faultRange(start: base, length: 4 * page, write: false)
        #expect(t.allSatisfy { $0.huge })
        let pinned = try space.pin(start: base + 4 * page, length: page, write: true)
        #expect(!isHuge(space, base) && !pinned[0].huge && ranges(probe).map(\.0) == [.hugeSplit])
        machine.unpin(pinned)
        _ = try space.makeExclusive(base + Self.huge, device: try #require(probe.device), owner: nil)
        #expect(!isHuge(space, base + Self.huge + page) && ranges(probe).map(\.0).suffix(2) == [.hugeSplit, .exclusive])
    }

    @Test("MADV_FREE of a whole huge page marks the folio; reclaim then splits and discards it")
    func lazyFreeWhole() throws {
        let machine = thpMachine(swap: 0)
        let (space, base, _) = try populated(machine)
        try space.adviseFree(start: base, length: Self.huge)
        #expect(isHuge(space, base) && machine.memory.flags(of: space.translate(base).frame).contains(.lazyFree))
        #expect(!space.translate(base + 9 * page).isDirty)
        #expect(try machine.pageOut(space, start: base, length: Self.huge) == 512)
        let discarded = try space.read(base + 9 * page)
        #expect(Array(discarded.prefix(3)) == [0, 0, 0])
    }

    /// Regression: khugepaged crashed (an entry "changed under a collapse")
    /// when reclaim's aging, which holds a page's lock but not the mmap
    /// lock, cleared an accessed bit between the scan and the collapse's
    /// page locks. The collapse now reads the entries again once it holds
    /// every lock.
    @Test("aging between a collapse's scan and its page locks clears an accessed bit: the collapse looks again and goes on")
    func agingDuringACollapseScan() throws {
        let machine = thpMachine()
        let space = machine.makeAddressSpace()
        let base = try space.map(length: Self.huge, kind: .anonymousPrivate)
        try space.adviseHugePage(start: base, length: Self.huge, enable: false)
        for p in 0..<Self.pages { try space.write(base + p * page, bytes(p)) }
        try space.adviseHugePage(start: base, length: Self.huge, enable: true)
        for frame in space.mappedFrames() { _ = machine.isRecentlyUsed(frame.frame.frame) }
        _ = try space.read(base + 5 * page)  // page 5 alone is young for the CPU
        let aged = space.translate(base + 5 * page)
        #expect(aged.isAccessed)
        // Page 0 is asked first (not young for the CPU); meanwhile aging
        // takes page 5's accessed bit, as kswapd would on another CPU.
        let young = YoungDevice(young: base)
        young.onTestYoung.withLock { $0 = { _ = machine.isRecentlyUsed(aged.frame) } }
        try space.notifiers.register(young)
        #expect(machine.collapseScan() == 1)
        #expect(isHuge(space, base))
        try check(space, base, pages: 0..<Self.pages)
        #expect(machine.violations.count == 0)
    }
}

/// A whole-space subscriber that tracks young bits for one address only,
/// and records what it was asked.
final class YoungDevice: AddressSpaceSubscriber, @unchecked Sendable {
    let capabilities: SubscriberCapabilities = [.youngTracking]
    let youngAddress: Mutex<UInt64?>
    let asked = Mutex<[String]>([])
    let tested = Atomic<Int>(0)
    /// Run (once) inside the first `testYoung`.
    let onTestYoung = Mutex<(@Sendable () -> Void)?>(nil)
    init(young: UInt64?) { youngAddress = Mutex(young) }
    func invalidateRangeStart(_ range: InvalidationRange) -> StartResult { .ok }
    func invalidateRangeEnd(_ range: InvalidationRange) {}
    func clearYoung(addressSpace: AddressSpaceID, start: UInt64, end: UInt64) -> Bool {
        asked.withLock { $0.append("\(start)-\(end)") }
        return youngAddress.withLock { $0 }.map { $0 >= start && $0 < end } ?? false
    }
    func testYoung(addressSpace: AddressSpaceID, address: UInt64) -> Bool {
        tested.add(1, ordering: .relaxed)
        if let hook = onTestYoung.withLock({ hook in defer { hook = nil }; return hook }) { hook() }
        return youngAddress.withLock { $0 } == address
    }
}
