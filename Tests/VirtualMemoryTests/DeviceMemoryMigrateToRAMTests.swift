import LabSync
import MMUNotifier
import Synchronization
import Testing
@testable import VirtualMemory

/// A device memory's migrate_to_ram (Linux: `pgmap->ops->migrate_to_ram`):
/// a CPU fault on one of its pages calls it first, with the fault's mmap
/// lock held shared, so the migration it starts does not take that lock
/// again (a second shared acquisition would wait behind a waiting writer
/// for ever); what it leaves in device memory the primary brings home.
@Suite("Device memory: migrate_to_ram")
struct DeviceMemoryMigrateToRAMTests {
    let gpu = OwnerCookie(0x6770)

    @Test func aCPUFaultCallsTheOwnerWhichMigratesWithTheFaultsLockHeld() throws {
        let machine = makeMachine()
        let space = machine.makeAddressSpace()
        let base = try space.map(length: 2 * page, kind: .anonymousPrivate)
        for i in 0..<2 { try space.write(base + UInt64(i) * page, Tag(space: 1, page: UInt32(i), writer: 0, version: 1).bytes) }
        let recorder = EventRecorder()
        try space.notifiers.register(recorder)
        let vram = machine.makeDeviceMemory(name: "vram", pages: 4, owner: gpu)
        #expect(try machine.migrateToDevice(space, start: base, length: 2 * page, into: vram) == 2)

        let calls = Mutex<[(UInt64, Bool)]>([])
        vram.setMigrateToRAM { faulting, address in
            // The fault's lock is this thread's: the migration runs under it.
            let held = AddressSpace.mmapReadHeld == ObjectIdentifier(faulting)
            calls.withLock { $0.append((address, held)) }
            _ = try? machine.migrateToHost(faulting, start: address, length: page, from: vram, announcingOwner: true)
        }
        #expect(Tag(try space.read(base + page)) == Tag(space: 1, page: 1, writer: 0, version: 1))
        let seen = calls.withLock { $0 }
        #expect(seen.count == 1 && seen[0].0 == base + page && seen[0].1, "\(seen)")
        #expect(recorder.migrations.last?.0 == gpu, "the owner's migration names it")
        #expect(AddressSpace.mmapReadHeld == nil, "bound only for the call")

        // A handler that moves nothing: the primary brings the page home itself, naming no owner.
        vram.setMigrateToRAM { _, _ in calls.withLock { $0.append((0, false)) } }
        #expect(Tag(try space.read(base)) == Tag(space: 1, page: 0, writer: 0, version: 1))
        #expect(calls.withLock { $0.count } == 2 && recorder.migrations.last?.0 == nil)
        #expect(vram.usedPages == 0 && machine.violations.count == 0)
        space.exit()
    }
}
