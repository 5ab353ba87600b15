import LabSync
import MMUNotifier
import Synchronization
import Testing
import TestSupport
@testable import VirtualMemory

/// Reclaim's young check (Linux: `folio_referenced`): it asks the
/// secondaries only about the pages its frame is mapped at, one check of a
/// page at a time, and unmaps only what it checked.
@Suite("Reclaim's young checks")
struct YoungCheckTests {
    /// A frame that reclaim took off the LRU, and that the page then left
    /// (MADV_DONTNEED, then a write maps a fresh frame), is still found at
    /// the page by the reverse map. Linux filters such false positives
    /// (`page_vma_mapped_walk` in `folio_referenced_one`, and
    /// `shrink_folio_list` unmaps only a folio that is mapped): the
    /// secondaries' accessed bits at the page belong to the new frame, for
    /// its own check. Asking them here took them (and a KVM page the guest
    /// used looked cold to its own check, which a concurrent check of the
    /// old frame could overlap: the aging oracle's "used page reported not
    /// young" on reclaim-storm), and the vmscan invalidation that followed
    /// zapped the device's live translation of the new frame.
    @Test func reclaimingAFrameThePageHasLeftAsksAndUnmapsNothingThere() throws {
        let machine = makeMachine(frames: 64)
        let space = machine.makeAddressSpace()
        let device = MirrorDevice("kvm", machine: machine, space: space)
        try space.notifiers.register(device)
        let base = try space.map(length: page, kind: .anonymousPrivate)
        try space.write(base, [1])
        let old = space.translate(base).frame
        // Reclaim isolates the frame (a reference, off the LRU) ...
        #expect(machine.memory.node(of: old).isolate(old, memory: machine.memory))
        // ... and before it looks at it, the page moves to another frame.
        try space.adviseDontNeed(start: base, length: page)
        try space.write(base, [2])
        let new = space.translate(base).frame
        #expect(new != old)
        _ = try device.read(base)  // the device uses the new frame: its accessed bit is set
        let events = device.events

        let freed = ExecutionContext.current.withReclaimContext { machine.reclaim(isolated: old) }

        #expect(freed, "the old frame is mapped nowhere: reclaim frees it")
        #expect(device.testYoung(addressSpace: space.id, address: base), "the new frame's accessed bit was left for its own check")
        #expect(device.events == events, "no invalidation of a page the frame no longer maps: \(device.events.dropFirst(events.count))")
        #expect(device.entryCount == 1, "the device keeps its translation of the new frame")
        #expect(space.translate(base).frame == new)
        #expect(try space.read(base)[0] == 2)
        #expect(machine.violations.count == 0)
    }

    /// A secondary answers `clearYoung` under its space's young lock (so two
    /// checks of one page never overlap, as Linux's page-table lock keeps
    /// them apart) and not under the page-table lock (which the device
    /// access check takes: KVM's answer waits for vCPUs in that check). A
    /// frame in use is kept; once cold, it is unmapped and evicted.
    @Test func aYoungCheckRunsUnderTheYoungLockAloneAndAColdPageGoes() throws {
        final class LockProbe: AddressSpaceSubscriber, @unchecked Sendable {
            let space: AddressSpace
            let capabilities: SubscriberCapabilities = [.youngTracking]
            let young = Atomic<Bool>(true)
            let checks = Atomic<Int>(0)
            let wrongLocks = Atomic<Int>(0)
            let vmscans = Atomic<Int>(0)
            init(_ space: AddressSpace) { self.space = space }
            func invalidateRangeStart(_ range: InvalidationRange) -> StartResult {
                if range.event == .vmscan { vmscans.add(1, ordering: .relaxed) }
                return .ok
            }
            func invalidateRangeEnd(_ range: InvalidationRange) {}
            func clearYoung(addressSpace: AddressSpaceID, start: UInt64, end: UInt64) -> Bool {
                checks.add(1, ordering: .relaxed)
                if !space.youngLock.isHeldByCurrentThread || space.ptl.isHeldByCurrentThread { wrongLocks.add(1, ordering: .relaxed) }
                return young.exchange(false, ordering: .relaxed)
            }
        }
        let machine = makeMachine(frames: 64)
        let space = machine.makeAddressSpace()
        let probe = LockProbe(space)
        try space.notifiers.register(probe)
        let base = try space.map(length: page, kind: .anonymousPrivate)
        try space.write(base, [7])
        let frame = space.translate(base).frame
        // Both checks find the CPU's accessed bit clear: the probe alone decides.
        func reclaim() -> Bool {
            space.ptl.withLock { space.pageTable.set(base >> 12, space.pageTable.entry(base >> 12).with(accessed: false)) }
            #expect(machine.memory.node(of: frame).isolate(frame, memory: machine.memory))
            return ExecutionContext.current.withReclaimContext { machine.reclaim(isolated: frame) }
        }

        #expect(!reclaim(), "young: kept")
        #expect(probe.vmscans.load(ordering: .relaxed) == 0)
        #expect(reclaim(), "cold: evicted")
        #expect(probe.vmscans.load(ordering: .relaxed) == 1, "the checked mapping is unmapped")
        #expect(probe.checks.load(ordering: .relaxed) == 2)
        #expect(probe.wrongLocks.load(ordering: .relaxed) == 0, "clearYoung ran under the young lock and not under the page-table lock")
        #expect(try space.read(base)[0] == 7, "swapped out and back")
        #expect(machine.violations.count == 0)
    }
}
