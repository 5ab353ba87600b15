import LabSync
import MMUNotifier
import Synchronization
import Testing
@testable import VirtualMemory

/// A device for the strict oracle's rules: a whole-space subscriber with an
/// identity that keeps one translation and uses it whenever the test says,
/// from inside its own callbacks too, and never drops it unless told.
final class ProbeDevice: AddressSpaceSubscriber, @unchecked Sendable {
    let machine: Machine
    let space: AddressSpace
    let device: DeviceID?
    let capabilities: SubscriberCapabilities
    /// The translation it keeps.
    let kept = Mutex<DeviceTranslation?>(nil)
    /// What to do inside start and end (nil: nothing).
    let onStart = Mutex<(@Sendable (InvalidationRange) -> Void)?>(nil)
    let onEnd = Mutex<(@Sendable (InvalidationRange) -> Void)?>(nil)
    /// Every start, and every secondary-TLB range, seen.
    let starts = Mutex<[InvalidationRange]>([])
    let flushes = Mutex<[InvalidationRange]>([])

    init(_ machine: Machine, _ space: AddressSpace, capabilities: SubscriberCapabilities = []) {
        self.machine = machine
        self.space = space
        device = machine.makeDeviceID()
        self.capabilities = capabilities
    }

    func invalidateRangeStart(_ range: InvalidationRange) -> StartResult {
        starts.withLock { $0.append(range) }
        onStart.withLock { $0 }?(range)
        return .ok
    }
    func invalidateRangeEnd(_ range: InvalidationRange) { onEnd.withLock { $0 }?(range) }
    func invalidateSecondaryTLBs(_ range: InvalidationRange) { flushes.withLock { $0.append(range) } }

    /// Takes a translation of `address` (faulting it in) and keeps it.
    func take(_ address: UInt64, write: Bool) throws {
        let translation = try space.faultRange(start: address, length: 4096, write: write)[0]
        kept.withLock { $0 = translation }
    }

    func read() { _ = machine.dmaRead(space, kept.withLock { $0 }!, issuer: device) }
    func write(_ bytes: [UInt8]) { machine.dmaWrite(space, kept.withLock { $0 }!, bytes, issuer: device) }
    var events: [NotifierEvent] { starts.withLock { $0.map(\.event) } }
}

/// Issue 15's rules, each shown to hold and shown to catch its breach:
/// the per-device stale-translation rule, frees inside the bracket,
/// permissions, the zero page, writable-but-clean swap-in, pinned pages,
/// exit's events, and the secondary-TLB flush points.
@Suite("The strict oracle")
struct StrictOracleTests {
    func kinds(_ machine: Machine) -> [MemoryViolation.Kind] { machine.violations.snapshot.map(\.kind) }

    @Test("a device may use the old frame before and during its own callback, never after it returned")
    func acknowledgedRangesBindTheDevice() throws {
        let machine = makeMachine()
        let space = machine.makeAddressSpace()
        let base = try space.map(length: 4 * page, kind: .anonymousPrivate)
        try space.write(base, [1])
        let probe = ProbeDevice(machine, space)
        // Another subscriber, called first, uses the probe's translation
        // before the probe has been told: legal.
        let earlier = ProbeDevice(machine, space)
        try space.notifiers.register(earlier)
        try space.notifiers.register(probe)
        try probe.take(base, write: false)
        earlier.onStart.withLock { $0 = { _ in probe.read() } }
        probe.onStart.withLock { $0 = { _ in probe.read() } }  // draining inside its own callback: legal
        probe.onEnd.withLock { $0 = { _ in probe.read() } }  // after its callback returned: stale, freed or not
        try space.adviseDontNeed(start: base, length: page)
        #expect(kinds(machine) == [.staleTranslation], "only the access after the acknowledgement: \(machine.violations.snapshot)")
        let violation = try #require(machine.violations.snapshot.first)
        #expect(violation.issuer == probe.device && violation.acknowledged?.event == .madviseDontNeed)
    }

    @Test("a page reference keeps the frame, not the mapping: inside its acknowledged bracket a device's use is stale, after the range it is its own")
    func aReferenceExcusesNothingInsideTheAcknowledgedBracket() throws {
        let machine = makeMachine()
        let space = machine.makeAddressSpace()
        let base = try space.map(length: 4 * page, kind: .anonymousPrivate)
        try space.write(base, [1])
        let probe = ProbeDevice(machine, space)
        try space.notifiers.register(probe)
        try probe.take(base, write: false)
        // The device holds a page reference (ABI 1.6 page_get) and says so on its translation.
        let t = try #require(probe.kept.withLock { $0 })
        machine.memory.get(Int32(t.frame.rawValue))
        let referenced = DeviceTranslation(
            address: t.address, frame: t.frame, generation: t.generation, writable: t.writable, pinned: false, devicePage: nil,
            exclusive: false, huge: false, referenced: true)
        probe.kept.withLock { $0 = referenced }
        probe.onEnd.withLock { $0 = { _ in probe.read() } }  // after its own callback returned, inside the bracket: stale
        try space.adviseDontNeed(start: base, length: page)
        #expect(kinds(machine) == [.staleTranslation], "\(machine.violations.snapshot)")
        #expect(machine.memory.generation(of: Int32(t.frame.rawValue)) == t.generation, "the reference kept the frame")
        // After the range: the page the driver holds, as a kmap of it is (not a finding).
        probe.read()
        #expect(kinds(machine) == [.staleTranslation], "\(machine.violations.snapshot)")
        machine.memory.put(Int32(t.frame.rawValue))
    }

    @Test("an event that keeps frames (mprotect) lets a device keep reading the page it maps, not writing it")
    func protectionEventsKeepFramesButNotWrites() throws {
        let machine = makeMachine()
        let space = machine.makeAddressSpace()
        let base = try space.map(length: page, kind: .anonymousPrivate)
        try space.write(base, [1])
        let probe = ProbeDevice(machine, space)
        try space.notifiers.register(probe)
        try probe.take(base, write: true)
        probe.onEnd.withLock { $0 = { _ in probe.read() } }
        try space.protect(start: base, length: page, .read)
        #expect(machine.violations.count == 0, "reading a page that stays mapped is harmless")
        probe.write([2])
        #expect(kinds(machine) == [.writeThroughReadOnly])
    }

    @Test("a zap under memory pressure frees its gathered pages inside the bracket")
    func zapsFreeInsideTheBracketUnderPressure() throws {
        for pressure in [false, true] {
            let machine = makeMachine(frames: 256)
            let space = machine.makeAddressSpace()
            let base = try space.map(length: 64 * page, kind: .anonymousPrivate)
            try space.populate(start: base, length: 64 * page, write: true)
            if pressure {
                // Down to the min watermark: a gather can get no batch page.
                let hog = machine.makeAddressSpace()
                let rest = try hog.map(length: 256 * page, kind: .anonymousPrivate)
                var address = rest
                while machine.memory.freeFrames > machine.memory.configuration.minFree { try hog.write(address, [1]); address += page }
            }
            let frames = (0..<64).map { space.translate(base + UInt64($0) * page) }.map { ($0.frame, machine.memory.generation(of: $0.frame)) }
            let freedBeforeEnd = Mutex(0)
            let probe = ProbeDevice(machine, space)
            probe.onEnd.withLock { $0 = { _ in
                freedBeforeEnd.withLock { $0 = frames.filter { machine.memory.generation(of: $0.0) != $0.1 }.count }
            } }
            try space.notifiers.register(probe)
            try space.unmap(start: base, length: 64 * page)
            let freed = freedBeforeEnd.withLock { $0 }
            if pressure {
                // The first batch (8 on the stack) is flushed and freed inside
                // the bracket; with those 8 free a batch page can be had
                // again, and the gather grows instead.
                #expect(freed >= 8, "a full batch was flushed and freed inside the bracket: \(freed)")
            } else {
                #expect(freed == 0, "with memory to spare the batch grows and frees after the end")
            }
        }
    }

    @Test("a device that zaps only at the range end is caught using a frame freed inside the bracket")
    func zappingAtRangeEndIsCaught() throws {
        let machine = makeMachine(frames: 64)
        let space = machine.makeAddressSpace()
        let base = try space.map(length: 16 * page, kind: .anonymousPrivate)
        try space.populate(start: base, length: 16 * page, write: true)
        let hog = machine.makeAddressSpace()
        let rest = try hog.map(length: 64 * page, kind: .anonymousPrivate)
        var address = rest
        while machine.memory.freeFrames > machine.memory.configuration.minFree { try hog.write(address, [1]); address += page }
        let probe = ProbeDevice(machine, space)
        try space.notifiers.register(probe)
        try probe.take(base, write: false)
        probe.onEnd.withLock { $0 = { _ in probe.read() } }  // the zap it does too late
        try space.unmap(start: base, length: 16 * page)
        #expect(kinds(machine) == [.useAfterFree], "\(machine.violations.snapshot)")
    }

    @Test("PROT_NONE stops the CPU and a device's fault, and a device access through an old translation is caught")
    func protNone() throws {
        let machine = makeMachine()
        let space = machine.makeAddressSpace()
        let base = try space.map(length: page, kind: .anonymousPrivate)
        try space.write(base, [7])
        let probe = ProbeDevice(machine, space)
        try space.notifiers.register(probe)
        try probe.take(base, write: false)
        try space.protect(start: base, length: page, .none)
        #expect(space.translate(base).isProtNone && space.translate(base).isPresent, "still mapped, no access")
        #expect(throws: MemoryError.protectionFault(base)) { try space.read(base) }
        #expect(throws: MemoryError.protectionFault(base)) { try space.faultRange(start: base, length: page, write: false) }
        probe.read()
        #expect(kinds(machine) == [.protNoneAccess])
        try space.protect(start: base, length: page, .readWrite)
        #expect(try space.read(base)[0] == 7, "the page comes back with its data")
    }

    @Test("a read fault maps the zero page read-only; a device writing through it is caught and the zero page stays zero")
    func theZeroPage() throws {
        let machine = makeMachine()
        let space = machine.makeAddressSpace()
        let base = try space.map(length: 2 * page, kind: .anonymousPrivate)
        let probe = ProbeDevice(machine, space)
        try space.notifiers.register(probe)
        try probe.take(base, write: false)
        let zero = try #require(probe.kept.withLock { $0 })
        #expect(zero.frame.rawValue == UInt64(machine.zeroFrame) && !zero.writable)
        #expect(try space.faultRange(start: base + page, length: page, write: false)[0].frame == zero.frame, "one zero page for all")
        probe.write([9, 9])
        #expect(kinds(machine) == [.writeThroughReadOnly])
        #expect(try space.read(base + page)[0...1] == [0, 0], "the zero page stayed zero")
        try space.write(base, [5])
        #expect(probe.events == [.cowBreak], "the first write replaced the zero page under a CLEAR-type invalidation")
        #expect(space.translate(base).frame != machine.zeroFrame)
    }

    @Test("an exclusive swap-in on a read maps writable and clean: a device write not reported dirty is lost, reported it is kept")
    func writableButClean() throws {
        for reportsDirty in [false, true] {
            let machine = makeMachine()
            let space = machine.makeAddressSpace()
            let base = try space.map(length: page, kind: .anonymousPrivate)
            try space.write(base, [1])
            #expect(try machine.pageOut(space, start: base, length: page) == 1)
            #expect(try space.read(base)[0] == 1)
            let pte = space.translate(base)
            #expect(pte.isWritable && !pte.isDirty, "do_swap_page: exclusive, writable, clean")
            #expect(machine.memory.flags(of: pte.frame).contains(.swapCache))
            let translation = try space.faultRange(start: base, length: page, write: false)[0]
            #expect(translation.writable, "hmm_range_fault reports a writable PTE as writable for a read")
            machine.dmaWrite(space, translation, [2])
            if reportsDirty { machine.setDirty(translation.frame) }
            #expect(try machine.pageOut(space, start: base, length: page) == 1)
            #expect(try space.read(base)[0] == (reportsDirty ? 2 : 1), "reported dirty: \(reportsDirty)")
        }
    }

    @Test("pinned pages: reclaim and KSM tell the devices and keep the PTE, migration too, fork copies for the child, soft-dirty leaves them")
    func pinnedPages() throws {
        let machine = makeMachine(frames: 256, nodes: 2)
        let space = machine.makeAddressSpace()
        let base = try space.map(length: 2 * page, kind: .anonymousPrivate)
        try space.write(base, [3])
        try space.write(base + page, [3])
        try space.adviseMergeable(start: base, length: 2 * page)
        let probe = ProbeDevice(machine, space)
        try space.notifiers.register(probe)
        let pins = try space.pin(start: base, length: page, write: true)
        let frame = space.translate(base)

        // Not yet in the swap cache: reclaim keeps it before telling anyone.
        #expect(try machine.pageOut(space, start: base, length: page) == 0)
        #expect(probe.events.isEmpty)
        // Migration tells, then restores.
        guard case .pinned = machine.migrate(space, address: base, to: 1) else { Issue.record("a pinned page must not move"); return }
        #expect(probe.events == [.migrate] && space.translate(base) == frame)
        // KSM: the two pages are identical; the pinned one is told about and kept writable.
        _ = machine.samePageMerger.scan()
        #expect(probe.events.contains(.ksm) && space.translate(base).isWritable && space.translate(base).frame == frame.frame)
        // Soft-dirty leaves the pinned page writable.
        try space.clearSoftDirty()
        #expect(space.translate(base).isWritable, "clear_soft_dirty skips pinned pages of COW mappings")
        // fork: the child gets a copy at once, the parent keeps its page writable.
        let child = try space.fork()
        #expect(space.translate(base) == space.translate(base).with(writable: true) && space.translate(base).frame == frame.frame)
        #expect(child.translate(base).frame != frame.frame)
        #expect(try child.read(base)[0] == 3)
        machine.dmaWrite(space, pins[0], [4])
        #expect(try space.read(base)[0] == 4, "the device's write reaches the parent's page")
        #expect(try child.read(base)[0] == 3, "and not the child's copy")
        child.exit()
        machine.unpin(pins, dirty: true)
        #expect(machine.violations.count == 0, "\(machine.violations.snapshot)")
    }

    @Test("exit: intervals get the release and then the teardown's UNMAP-type zap; whole-space subscribers only release")
    func exitEvents() throws {
        final class Interval: IntervalInvalidator, @unchecked Sendable {
            let events = Mutex<[NotifierEvent]>([])
            func invalidate(_ interval: IntervalNotifier, range: InvalidationRange, currentSeq: UInt64) -> Bool {
                events.withLock { $0.append(range.event) }
                return true
            }
        }
        let machine = makeMachine()
        let space = machine.makeAddressSpace()
        let base = try space.map(length: 4 * page, kind: .anonymousPrivate)
        try space.write(base, [1])
        let interval = Interval()
        _ = try space.notifiers.insertInterval(start: base, end: base + 4 * page, ops: interval)
        let whole = ProbeDevice(machine, space)
        try space.notifiers.register(whole)
        space.exit()
        #expect(interval.events.withLock { $0 } == [.exit, .munmap])
        #expect(whole.events.isEmpty, "unhooked by the release before the teardown")
    }

    @Test("secondary TLBs hear of a change where the TLB is flushed: the page, the whole space for reclaim, each gather flush")
    func secondaryTLBFlushPoints() throws {
        let machine = makeMachine(frames: 128)
        let space = machine.makeAddressSpace()
        let base = try space.map(length: 64 * page, kind: .anonymousPrivate)
        try space.populate(start: base, length: 64 * page, write: true)
        let probe = ProbeDevice(machine, space, capabilities: [.secondaryTLB])
        try space.notifiers.register(probe)
        try space.protect(start: base, length: page, .read)
        #expect(probe.flushes.withLock { $0.map { [$0.start, $0.end] } } == [[base, base + page]])
        _ = try machine.pageOut(space, start: base + page, length: page)
        #expect(probe.flushes.withLock { $0.last.map { [$0.start, $0.end] } } == [0, .max], "x86's deferred reclaim flush")
        probe.flushes.withLock { $0.removeAll() }
        let hog = machine.makeAddressSpace()
        let rest = try hog.map(length: 128 * page, kind: .anonymousPrivate)
        var address = rest
        while machine.memory.freeFrames > machine.memory.configuration.minFree { try hog.write(address, [1]); address += page }
        try space.unmap(start: base + 2 * page, length: 32 * page)
        let flushes = probe.flushes.withLock { $0 }
        #expect(flushes.count >= 2, "one for the first full batch of 8, one at the end: \(flushes.count)")
        #expect(flushes.first?.start == base + 2 * page && flushes.last?.end == base + 34 * page)
    }

    @Test("migrate_to_host announces the owner when asked, as migrate_to_ram does")
    func migrateToHostOwner() throws {
        for announce in [false, true] {
            let machine = makeMachine()
            let space = machine.makeAddressSpace()
            let base = try space.map(length: 2 * page, kind: .anonymousPrivate)
            try space.write(base, [1])
            let recorder = EventRecorder()
            try space.notifiers.register(recorder)
            let vram = machine.makeDeviceMemory(name: "vram", pages: 4, owner: OwnerCookie(0x77))
            #expect(try machine.migrateToDevice(space, start: base, length: page, into: vram) == 1)
            #expect(try machine.migrateToHost(space, start: base, length: page, from: vram, announcingOwner: announce) == 1)
            #expect(recorder.migrations.last?.0 == (announce ? OwnerCookie(0x77) : nil))
        }
    }

    @Test("a change_pte device may finish a write through its old writable translation until the ksm range ends, not after; others may not")
    func changePTEDevicesFlushByTheKSMEnd() throws {
        for handlesChangePTE in [true, false] {
            let machine = makeMachine(frames: 64)
            let a = machine.makeAddressSpace()
            let b = machine.makeAddressSpace()
            let inA = try a.map(length: page, kind: .anonymousPrivate)
            let inB = try b.map(length: page, kind: .anonymousPrivate)
            try a.write(inA, [9, 9, 9])
            try b.write(inB, [9, 9, 9])
            let probe = ProbeDevice(machine, b, capabilities: handlesChangePTE ? [.changePTE] : [])
            try b.notifiers.register(probe)
            try probe.take(inB, write: true)
            // At the end of the write-protect step, a write already on its
            // way lands: it changes the page, so KSM's compare (after the
            // end) finds the pages different and does not merge.
            probe.onEnd.withLock { $0 = { range in if range.event == .ksm { probe.write([7]) } } }
            try a.adviseMergeable(start: inA, length: page)
            try b.adviseMergeable(start: inB, length: page)
            _ = machine.samePageMerger.scan()
            #expect(!machine.memory.flags(of: b.translate(inB).frame).contains(.ksm), "the write made the pages differ: b's page was not merged")
            #expect(try b.read(inB)[0] == 7, "the write was not lost")
            if handlesChangePTE {
                #expect(machine.violations.count == 0, "inside the ksm range: \(machine.violations.snapshot)")
                probe.onEnd.withLock { $0 = nil }
                probe.write([8])  // after the range ended: the page is read-only
                #expect(kinds(machine) == [.writeThroughReadOnly])
            } else {
                // A device that stopped at its start may not write after it.
                #expect(kinds(machine) == [.writeThroughReadOnly])
            }
        }
    }
}
