import LabSync
import MMUNotifier
import Testing
@testable import VirtualMemory

/// Each fault-injection switch breaks the contract one way the mailing-list
/// threads warn about (docs/CONTRACT.md); each test shows the checks catch
/// it, and that the same scenario is clean with the switch off.
@Suite("Fault injection is caught")
struct FaultInjectionTests {
    /// A device with a translation drains its DMA when the invalidation starts.
    func drainScenario(_ faults: MemoryFaultInjection) throws -> Machine {
        let machine = makeMachine(faults: faults)
        let space = machine.makeAddressSpace()
        let device = MirrorDevice("gpu", machine: machine, space: space)
        device.drainOnStart.store(true, ordering: .relaxed)
        try space.notifiers.register(device)
        let base = try space.map(length: 4 * page, kind: .anonymousPrivate)
        for i in 0..<4 {
            try space.write(base + UInt64(i) * page, [UInt8(i + 1)])  // real frames, not the zero page
            _ = try device.read(base + UInt64(i) * page)
        }
        // Reuse the freed frames at once, as a busy machine would.
        let other = machine.makeAddressSpace()
        try space.unmap(start: base, length: 4 * page)
        let reuse = try other.map(length: 4 * page, kind: .anonymousPrivate)
        try other.populate(start: reuse, length: 4 * page, write: true)
        return machine
    }

    @Test func freeingBeforeInvalidatingIsCaughtAsUseAfterFree() throws {
        #expect(try drainScenario([]).violations.count == 0, "the right order: start, clear, flush, end, free")
        let broken = try drainScenario(.freeBeforeInvalidate)
        let kinds = broken.violations.snapshot.map(\.kind)
        #expect(!kinds.isEmpty && kinds.allSatisfy { $0 == .useAfterFree }, "the backwards order (docs/CONTRACT.md, rule 5) must be caught: \(kinds)")
    }

    @Test func skippingARangeEndIsCaughtAsAnUnpairedStart() throws {
        for faults: MemoryFaultInjection in [[], .skipRangeEnd] {
            let machine = makeMachine(faults: faults)
            let space = machine.makeAddressSpace()
            try space.notifiers.register(MirrorDevice("kvm", machine: machine, space: space))
            let base = try space.map(length: page, kind: .anonymousPrivate)
            try space.write(base, [1])
            try space.unmap(start: base, length: page)
            let unpaired = machine.notifierCore.contractViolations.snapshot.filter { $0.kind == .unpairedStart }
            #expect(unpaired.count == (faults.isEmpty ? 0 : 1))
        }
    }

    @Test func skippingTheSecondariesYoungCheckEvictsDeviceHotPages() throws {
        #expect(try deviceHotScenario(makeMachine(frames: 128)).0 == 0)
        let (evictedHot, _) = try deviceHotScenario(makeMachine(frames: 128, faults: .skipYoungCheck))
        #expect(evictedHot > 0, "without clearYoung, reclaim evicts pages a device uses hot (docs/CONTRACT.md, rule 12)")
    }

    /// A device pins a file page, writeback cleans it, the device writes,
    /// unpins with its dirty report, reclaim evicts the page: the device's
    /// write must reach the file.
    func deviceWriteReachesTheFile(_ faults: MemoryFaultInjection) throws -> Bool {
        let machine = makeMachine(faults: faults)
        let space = machine.makeAddressSpace()
        let file = machine.makeFile(named: "rdma-buffer", pages: 1)
        let base = try space.map(length: page, kind: .fileShared, file: file)
        try space.write(base, [1])
        let pins = try space.pin(start: base, length: page, write: true)
        machine.writeback(file)
        machine.dmaWrite(space, pins[0], [2])  // the NIC writes after the page was cleaned
        machine.unpin(pins, dirty: true)
        #expect(try machine.pageOut(space, start: base, length: page) == 1)
        let reread = try space.read(base)[0]
        return file.storedBytes(at: 0)[0] == 2 && reread == 2
    }

    @Test func droppingASecondarysDirtyReportLosesTheWrite() throws {
        #expect(try deviceWriteReachesTheFile([]))
        #expect(try !deviceWriteReachesTheFile(.dropSecondaryDirty), "a lost dirty report must show as a lost write")
    }
}
