import LabSync
import MMUNotifier
import Testing
@testable import VirtualMemory

@Suite("Host services for devices")
struct HostServicesTests {
    @Test func faultRangeReturnsTheFramesThePrimaryMaps() throws {
        let machine = makeMachine()
        let space = machine.makeAddressSpace()
        let base = try space.map(length: 4 * page, kind: .anonymousPrivate)
        let translations = try space.faultRange(start: base, length: 4 * page, write: true)
        #expect(translations.count == 4)
        for t in translations {
            #expect(UInt64(space.translate(t.address).frame) == t.frame.rawValue)
            #expect(t.writable)
            #expect(!t.pinned)
        }
        #expect(machine.memory.freeFrames == 256 - 4)
        #expect(throws: MemoryError.segmentationFault(base + 4 * page)) {
            try space.faultRange(start: base, length: 5 * page, write: false)
        }
    }

    @Test func faultRangeWithAnIntervalReturnsTheSequenceToCheck() throws {
        final class Range: IntervalInvalidator, @unchecked Sendable {
            func invalidate(_ interval: IntervalNotifier, range: InvalidationRange, currentSeq: UInt64) -> Bool {
                interval.setSeq(currentSeq)
                return true
            }
        }
        let machine = makeMachine()
        let space = machine.makeAddressSpace()
        let base = try space.map(length: 4 * page, kind: .anonymousPrivate)
        let interval = try space.notifiers.insertInterval(start: base, end: base + 4 * page, ops: Range())
        let faulted = try space.faultRange(start: base, length: 4 * page, write: true, interval: interval)
        #expect(faulted.translations.count == 4)
        #expect(!interval.readRetry(faulted.sequence), "nothing invalidated the range yet")
        _ = try machine.pageOut(space, start: base, length: page)
        #expect(interval.readRetry(faulted.sequence), "reclaim invalidated it: the device must not install")
    }

    @Test func aDeviceThatIgnoresInvalidationsIsCaughtUsingAStaleTranslation() throws {
        let machine = makeMachine()
        let space = machine.makeAddressSpace()
        let base = try space.map(length: page, kind: .anonymousPrivate)
        try space.write(base, [1])
        let kept = try space.faultRange(start: base, length: page, write: false)[0]  // no subscription: nobody tells it
        #expect(machine.dmaRead(space, kept)[0] == 1)
        #expect(machine.violations.count == 0)
        #expect(try machine.pageOut(space, start: base, length: page) == 1)
        _ = machine.dmaRead(space, kept)
        let violation = try #require(machine.violations.snapshot.first)
        #expect(violation.kind == .useAfterFree, "the frame was freed by reclaim")
        #expect(violation.address == base)
        #expect(violation.frame == kept.frame)

        // Remapped behind its back without being freed: a stale translation.
        let other = machine.makeFrameRemappedScenario()
        #expect(other.violations.snapshot.map(\.kind) == [.staleTranslation])
    }

    @Test func pinsKeepFramesAliveAndAreReturned() throws {
        let machine = makeMachine()
        let space = machine.makeAddressSpace()
        let base = try space.map(length: 2 * page, kind: .anonymousPrivate)
        let pins = try space.pin(start: base, length: 2 * page, write: true)
        #expect(pins.allSatisfy { machine.memory.pincount(of: Int32($0.frame.rawValue)) == 1 })
        try space.unmap(start: base, length: 2 * page)
        // The pinned frames outlive the mapping; the device may still use them.
        machine.dmaWrite(space, pins[0], [5])
        #expect(machine.violations.count == 0, "a pinned frame is the device's to use")
        #expect(machine.memory.freeFrames == 256 - 2)
        machine.unpin(pins)
        #expect(machine.memory.freeFrames == 256, "no pin leak")
    }

    /// `pin` is all or nothing: a range with a hole in it fails and keeps
    /// none of the pages it had already pinned (found writing the RDMA
    /// plugin's pinned regions: the first version leaked them).
    @Test func aPinThatFailsPartWayKeepsNoPins() throws {
        let machine = makeMachine()
        let space = machine.makeAddressSpace()
        let base = try space.map(length: 3 * page, kind: .anonymousPrivate)
        try space.unmap(start: base + 2 * page, length: page)
        #expect(throws: MemoryError.self) { try space.pin(start: base, length: 3 * page, write: true) }
        for address in [base, base + page] {
            let frame = space.translate(address).frame
            #expect(machine.memory.pincount(of: frame) == 0, "0x\(String(address, radix: 16)) kept a pin")
        }
        space.exit()
        _ = machine.dropCaches()
        #expect(machine.memory.freeFrames == 256, "no pin leak")
    }

    @Test func devicePageTablePagesAreChargedAndBoundedInReclaimContext() throws {
        let machine = Machine(.init(memory: .init(frames: 64, payloadSize: 16), swapSlots: 64, devicePageTableReserve: 2))
        let normal = try #require(machine.allocateDevicePageTablePage())
        #expect(machine.memory.freeFrames == 63)
        var fromReserve: [PageFrameNumber] = []
        ExecutionContext.current.withReclaimContext {
            while let page = machine.allocateDevicePageTablePage() { fromReserve.append(page) }
        }
        #expect(fromReserve.count == 2, "reclaim context gets only the bounded reserve, then nil to handle")
        for page in fromReserve + [normal] { machine.freeDevicePageTablePage(page) }
        #expect(machine.memory.freeFrames == 64)
        ExecutionContext.current.withReclaimContext {
            #expect(machine.allocateDevicePageTablePage() != nil, "freeing returns the reserve")
        }
    }

    @Test func markAccessedKeepsAPageThroughOneReclaimPass() throws {
        let machine = makeMachine(frames: 64)
        let space = machine.makeAddressSpace()
        let base = try space.map(length: page, kind: .anonymousPrivate)
        let t = try space.faultRange(start: base, length: page, write: true)[0]
        // Clear the CPU accessed bit the fault set, then mark the page from the device.
        #expect(machine.isRecentlyUsed(Int32(t.frame.rawValue)))
        machine.markAccessed(t.frame)
        #expect(machine.isRecentlyUsed(Int32(t.frame.rawValue)))
        #expect(!machine.isRecentlyUsed(Int32(t.frame.rawValue)))
    }

    /// set_dirty and mark_accessed through a translation whose frame was
    /// freed since (munmap) mark nothing and are uses after free naming
    /// the call; through a live one they mark the frame and record nothing.
    @Test func markingAFreedFrameIsAUseAfterFreeAndMarksNothing() throws {
        let machine = makeMachine(frames: 64)
        let space = machine.makeAddressSpace()
        let base = try space.map(length: 2 * page, kind: .anonymousPrivate)
        let live = try space.faultRange(start: base, length: page, write: true)[0]
        let frame = Int32(live.frame.rawValue)
        machine.memory.clearFlags(.dirty, on: frame)
        machine.markFromDevice(live, service: "set_dirty", dirty: true, space: { space.id }, issuer: nil)
        #expect(machine.memory.flags(of: frame).contains(.dirty), "a live frame is marked")
        #expect(machine.violations.count == 0, "\(machine.violations.snapshot)")

        let gone = try space.faultRange(start: base + page, length: page, write: true)[0]
        try space.unmap(start: base + page, length: page)
        let freed = Int32(gone.frame.rawValue)
        #expect(machine.memory.generation(of: freed) != gone.generation, "munmap freed the frame")
        let flagsBefore = machine.memory.flags(of: freed)
        machine.markFromDevice(gone, service: "set_dirty", dirty: true, space: { space.id }, issuer: nil)
        machine.markFromDevice(gone, service: "mark_accessed", dirty: false, space: { space.id }, issuer: nil)
        #expect(machine.memory.flags(of: freed) == flagsBefore, "the freed frame's flags are untouched")
        let recorded = machine.violations.snapshot
        #expect(recorded.map(\.kind) == [.useAfterFree, .useAfterFree], "\(recorded)")
        #expect(recorded.map(\.service) == ["set_dirty", "mark_accessed"])
        #expect(recorded.allSatisfy { $0.addressSpace == space.id && $0.address == base + page && $0.generation == gone.generation })
        #expect(recorded.first?.description.contains("called set_dirty on \(gone.frame) gen \(gone.generation)") == true, "\(recorded)")
    }
}

extension Machine {
    /// A device keeps a translation while the page migrates without the
    /// device being subscribed; someone else still holds a reference to the
    /// old frame, so it is not freed (same generation) but no longer what
    /// the primary maps: the device's read is a stale translation.
    func makeFrameRemappedScenario() -> Machine {
        let machine = makeMachine(nodes: 2)
        let space = machine.makeAddressSpace()
        let base = try! space.map(length: page, kind: .anonymousPrivate)
        try! space.write(base, [1])
        let kept = try! space.faultRange(start: base, length: page, write: false)[0]
        let old = Int32(kept.frame.rawValue)
        machine.memory.get(old)
        _ = machine.migrate(space, address: base, to: 1 - machine.memory.node(of: old).id)
        _ = machine.dmaRead(space, kept)
        machine.memory.put(old)
        return machine
    }
}
