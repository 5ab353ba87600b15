import LabSync
import MMUNotifier
import Synchronization
import Testing
@testable import VirtualMemory

/// Records the events and owners of the invalidations it sees.
final class EventRecorder: AddressSpaceSubscriber, @unchecked Sendable {
    let seen = SpinLocked<[(NotifierEvent, OwnerCookie?, UInt64, UInt64)]>([], name: "recorder", domain: SyncDomain())
    func invalidateRangeStart(_ range: InvalidationRange) -> StartResult {
        seen.withLock { $0.append((range.event, range.owner, range.start, range.end)) }
        return .ok
    }
    func invalidateRangeEnd(_ range: InvalidationRange) {}
    var migrations: [(OwnerCookie?, UInt64, UInt64)] { seen.withLock { $0.filter { $0.0 == .migrate }.map { ($0.1, $0.2, $0.3) } } }
}

/// Device-private memory: pages move to a device's memory and back, the
/// CPU faults them home, devices reach them only through checked DMA, and
/// nothing leaks.
@Suite("Device-private memory")
struct DeviceMemoryTests {
    let gpu = OwnerCookie(0x6770)

    func filled(_ machine: Machine, pages: Int) throws -> (AddressSpace, UInt64) {
        let space = machine.makeAddressSpace()
        let base = try space.map(length: UInt64(pages) * page, kind: .anonymousPrivate)
        for i in 0..<pages { try space.write(base + UInt64(i) * page, Tag(space: 1, page: UInt32(i), writer: 0, version: 1).bytes) }
        return (space, base)
    }

    @Test func pagesMoveToTheDeviceAndACPUAccessBringsThemHome() throws {
        let machine = makeMachine()
        let (space, base) = try filled(machine, pages: 8)
        let recorder = EventRecorder()
        try space.notifiers.register(recorder)
        let vram = machine.makeDeviceMemory(name: "vram", pages: 16, owner: gpu)
        let framesBefore = machine.memory.allocatedFrames().count

        #expect(try machine.migrateToDevice(space, start: base, length: 8 * page, into: vram) == 8)
        #expect(vram.usedPages == 8)
        #expect(machine.memory.allocatedFrames().count == framesBefore - 8, "the system frames are freed")
        #expect(space.translate(base).isDevicePrivate)
        #expect(recorder.migrations.count == 1 && recorder.migrations[0].0 == gpu, "the migrate event names its owner")

        // The CPU reads page 3: it comes home with its data, under a migrate
        // invalidation without an owner (every device must let go).
        #expect(Tag(try space.read(base + 3 * page)) == Tag(space: 1, page: 3, writer: 0, version: 1))
        #expect(space.translate(base + 3 * page).isPresent)
        #expect(vram.usedPages == 7)
        #expect(recorder.migrations.count == 2 && recorder.migrations[1].0 == nil)

        #expect(try machine.migrateToHost(space, start: base, length: 8 * page) == 7)
        for i in 0..<8 { #expect(Tag(try space.read(base + UInt64(i) * page)) == Tag(space: 1, page: UInt32(i), writer: 0, version: 1)) }
        #expect(vram.usedPages == 0)
        space.exit()
        #expect(machine.memory.allocatedFrames().isEmpty)
        #expect(machine.violations.count == 0)
    }

    @Test func theOwnerReachesItsPagesThroughFaultRangeAndOthersBringThemHome() throws {
        let machine = makeMachine()
        let (space, base) = try filled(machine, pages: 2)
        let vram = machine.makeDeviceMemory(name: "vram", pages: 4, owner: gpu)
        _ = try machine.migrateToDevice(space, start: base, length: 2 * page, into: vram)

        let own = try space.faultRange(start: base, length: 2 * page, write: true, devicePrivateOwner: gpu)
        #expect(own.allSatisfy { $0.devicePage != nil && $0.writable })
        machine.dmaWrite(space, own[0], Tag(space: 1, page: 0, writer: 7, version: 2).bytes)
        #expect(machine.violations.count == 0)

        // Another device (no owner, or another owner) faults them home.
        let other = try space.faultRange(start: base, length: 2 * page, write: false, devicePrivateOwner: OwnerCookie(99))
        #expect(other.allSatisfy { $0.devicePage == nil })
        #expect(vram.usedPages == 0)
        #expect(Tag(try space.read(base)) == Tag(space: 1, page: 0, writer: 7, version: 2), "the device's write came home")

        // The owner's old translation is now stale, and the page was freed.
        _ = machine.dmaRead(space, own[1])
        #expect(machine.violations.snapshot.map(\.kind) == [.useAfterFree])
        space.exit()
    }

    @Test func munmapAndExitFreeDevicePagesAndForkBringsThemHome() throws {
        let machine = makeMachine()
        let (space, base) = try filled(machine, pages: 6)
        let vram = machine.makeDeviceMemory(name: "vram", pages: 8, owner: gpu)
        #expect(try machine.migrateToDevice(space, start: base, length: 6 * page, into: vram) == 6)
        try space.unmap(start: base, length: 2 * page)
        #expect(vram.usedPages == 4)

        let child = try space.fork()
        #expect(vram.usedPages == 0, "fork brings device pages home first")
        #expect(Tag(try child.read(base + 5 * page)) == Tag(space: 1, page: 5, writer: 0, version: 1))

        #expect(try machine.migrateToDevice(space, start: base + 2 * page, length: 4 * page, into: vram) == 0,
                "pages shared copy-on-write with the child do not move")
        try space.write(base + 2 * page, [9])  // COW break: exclusive again
        #expect(try machine.migrateToDevice(space, start: base + 2 * page, length: 4 * page, into: vram) == 1)
        space.exit()
        child.exit()
        #expect(vram.usedPages == 0)
        #expect(machine.memory.allocatedFrames().isEmpty)
    }

    @Test func mprotectAndMremapKeepDeviceEntriesRight() throws {
        let machine = makeMachine()
        let (space, base) = try filled(machine, pages: 2)
        let vram = machine.makeDeviceMemory(name: "vram", pages: 2, owner: gpu)
        _ = try machine.migrateToDevice(space, start: base, length: 2 * page, into: vram)
        try space.protect(start: base, length: 2 * page, .read)
        #expect(!space.translate(base).isWritable)
        #expect(throws: MemoryError.protectionFault(base)) {
            _ = try space.faultRange(start: base, length: page, write: true, devicePrivateOwner: gpu)
        }
        let target: UInt64 = 0x20_0000_0000
        try space.remap(from: base, length: 2 * page, to: target)
        let devicePage = space.translate(target + page).devicePage
        #expect(vram.mapping(of: devicePage)?.address == target + page, "the reverse map follows mremap")
        #expect(machine.evictDeviceMemory(vram, pages: 2) == 2)
        #expect(Tag(try space.read(target + page)) == Tag(space: 1, page: 1, writer: 0, version: 1))
        #expect(vram.evicted.load(ordering: .relaxed) == 2)
        space.exit()
    }

    @Test func aFullDeviceMemoryMovesWhatFits() throws {
        let machine = makeMachine()
        let (space, base) = try filled(machine, pages: 6)
        let vram = machine.makeDeviceMemory(name: "vram", pages: 4, owner: gpu)
        #expect(try machine.migrateToDevice(space, start: base, length: 6 * page, into: vram) == 4)
        #expect(try machine.migrateToDevice(space, start: base, length: 6 * page, into: vram) == 0)
        #expect(machine.evictDeviceMemory(vram, pages: 2) == 2)
        #expect(try machine.migrateToDevice(space, start: base, length: 6 * page, into: vram) == 2)
        for i in 0..<6 { #expect(Tag(try space.read(base + UInt64(i) * page)) == Tag(space: 1, page: UInt32(i), writer: 0, version: 1)) }
        space.exit()
        #expect(vram.usedPages == 0)
    }
}
