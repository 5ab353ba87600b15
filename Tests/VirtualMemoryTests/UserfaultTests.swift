import LabSync
import MMUNotifier
import Synchronization
import Testing
@testable import VirtualMemory

/// userfaultfd write-protect (issue 20, item 4): protecting a range is an
/// `mprotect` (PROTECTION_VMA) invalidation that makes the pages read-only
/// for everyone; a CPU write waits for the monitor; a device's write fault
/// fails; unprotecting is another PROTECTION_VMA invalidation. And mremap
/// of populated pages: the old range's invalidation, the new range filled
/// without a fault.
@Suite("userfaultfd write-protect and mremap")
struct UserfaultTests {
    @Test("protect: mprotect-type invalidation, read-only everywhere, reads still work; a device write through its old translation is caught")
    func protectMakesPagesReadOnly() throws {
        let machine = makeMachine()
        let space = machine.makeAddressSpace()
        let base = try space.map(length: 4 * page, kind: .anonymousPrivate)
        try space.write(base, [1])
        let probe = ProbeDevice(machine, space)
        try space.notifiers.register(probe)
        try probe.take(base, write: true)
        #expect(throws: MemoryError.self) { try space.userfaultWriteProtect(start: base, length: 4 * page, protect: true) }
        try space.registerUserfault(start: base, length: 4 * page)
        try space.userfaultWriteProtect(start: base, length: 4 * page, protect: true)
        #expect(probe.events == [.mprotect])
        let pte = space.translate(base)
        #expect(pte.isUffdWP && !pte.isWritable && pte.isAccessible)
        #expect(try space.read(base).first == 1)
        probe.write([2])
        #expect(machine.violations.snapshot.map(\.kind) == [.writeThroughReadOnly])
        // A device's write fault on it fails (it cannot wait for the monitor).
        #expect(throws: MemoryError.protectionFault(base)) { try space.faultRange(start: base, length: page, write: true) }
        #expect(try space.faultRange(start: base, length: page, write: false).first?.writable == false)
    }

    @Test("a CPU write waits, without the mmap lock, until the monitor unprotects the page, and then lands")
    func aCPUWriteWaitsForTheMonitor() throws {
        let machine = makeMachine()
        let space = machine.makeAddressSpace()
        let base = try space.map(length: 2 * page, kind: .anonymousPrivate)
        try space.write(base, [1])
        try space.write(base + page, [2])
        try space.registerUserfault(start: base, length: 2 * page)
        try space.userfaultWriteProtect(start: base, length: 2 * page, protect: true)
        let wrote = Atomic<Bool>(false)
        let writer = machine.sync.spawnThread(named: "writer") {
            try? space.write(base, [7])
            wrote.store(true, ordering: .releasing)
        }
        // The monitor sees the fault; meanwhile the mmap lock is free (an
        // mprotect, which takes it exclusively, goes through).
        var faults: [UInt64] = []
        for _ in 0..<2_000 where faults.isEmpty {
            faults = space.pendingUserfaults()
            machine.sync.sleep(for: .microseconds(500))
        }
        #expect(faults == [base])
        let wroteEarly = wrote.load(ordering: .acquiring)
        #expect(!wroteEarly)
        try space.protect(start: base + page, length: page, .read)
        try space.userfaultWriteProtect(start: base, length: page, protect: false)
        writer.join()
        let wroteLate = wrote.load(ordering: .acquiring)
        #expect(wroteLate)
        #expect(try space.read(base).first == 7)
        #expect(!space.translate(base).isUffdWP && space.translate(base + page).isUffdWP)
        #expect(machine.statistics.userfaultWaits.load(ordering: .relaxed) == 1)
    }

    @Test("the mark survives swap-out and swap-in, and migration; fork's child does not inherit it")
    func theMarkTravels() throws {
        let machine = makeMachine(nodes: 2)
        let space = machine.makeAddressSpace()
        let base = try space.map(length: 2 * page, kind: .anonymousPrivate)
        try space.write(base, [1])
        try space.write(base + page, [2])
        try space.registerUserfault(start: base, length: 2 * page)
        try space.userfaultWriteProtect(start: base, length: 2 * page, protect: true)
        #expect(try machine.pageOut(space, start: base, length: page) == 1)
        #expect(space.translate(base).isSwap && space.translate(base).isUffdWP)
        #expect(try space.read(base).first == 1)
        #expect(space.translate(base).isUffdWP && !space.translate(base).isWritable, "swapped in read-only, still protected")
        guard case .migrated = machine.migrate(space, address: base + page, to: 1) else {
            Issue.record("migration failed")
            return
        }
        #expect(space.translate(base + page).isUffdWP)
        let child = try space.fork()
        defer { child.exit() }
        #expect(!child.translate(base).isUffdWP)
        try child.write(base, [3])
        #expect(try space.read(base).first == 1)
    }

    @Test("mremap moves populated pages: the old range is invalidated, the new one is filled without a fault, the frames stay")
    func mremapMovesPopulatedPages() throws {
        let machine = makeMachine()
        let space = machine.makeAddressSpace()
        let base = try space.map(length: 4 * page, kind: .anonymousPrivate)
        for p in 0..<UInt64(4) { try space.write(base + p * page, [UInt8(p + 1)]) }
        let probe = ProbeDevice(machine, space)
        try space.notifiers.register(probe)
        try probe.take(base, write: true)
        let frames = (0..<4).map { space.translate(base + UInt64($0) * page).frame }
        let target = base + 0x1000_0000
        let faults = machine.statistics.faults.load(ordering: .relaxed)
        try space.remap(from: base, length: 4 * page, to: target)
        #expect(probe.starts.withLock { $0.map { ($0.event, $0.start, $0.end) } }.elementsEqual([(NotifierEvent.mremap, base, base + 4 * page)]) { $0 == $1 })
        #expect((0..<4).map { space.translate(target + UInt64($0) * page).frame } == frames)
        #expect(try space.read(target + 2 * page).first == 3)
        #expect(machine.statistics.faults.load(ordering: .relaxed) == faults, "no fault to fill the new range")
        #expect(throws: MemoryError.segmentationFault(base)) { try space.read(base) }
        // A device that keeps its translation for the old address is caught.
        probe.write([9])
        #expect(machine.violations.snapshot.map(\.kind) == [.staleTranslation])
    }
}
