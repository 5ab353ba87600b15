import TestSupport
import LabSync
import MMUNotifier
import Synchronization
import VirtualMemory

#if canImport(Glibc)
import Glibc
#endif

let page: UInt64 = 4096

func makeMachine(
    frames: Int = 256, nodes: Int = 1, swapSlots: Int = 1024, faults: MemoryFaultInjection = [], payload: Int = 16
) -> Machine {
    Machine(.init(memory: .init(frames: frames, nodes: nodes, payloadSize: payload), swapSlots: swapSlots, faults: faults))
}

/// The oracle's tag: 16 bytes naming who wrote a page, where, and which version.
struct Tag: Equatable, CustomStringConvertible {
    var space: UInt32
    var page: UInt32
    var writer: UInt32
    var version: UInt32

    var bytes: [UInt8] {
        withUnsafeBytes(of: (space.littleEndian, page.littleEndian, writer.littleEndian, version.littleEndian)) { Array($0) }
    }

    init(space: UInt32, page: UInt32, writer: UInt32, version: UInt32) {
        self.space = space
        self.page = page
        self.writer = writer
        self.version = version
    }

    init(_ bytes: [UInt8]) {
        func word(_ i: Int) -> UInt32 { bytes[i..<i + 4].reversed().reduce(0) { $0 << 8 | UInt32($1) } }
        self.init(space: word(0), page: word(4), writer: word(8), version: word(12))
    }

    var description: String { "tag(mm \(space) page \(page) writer \(writer) v\(version))" }
}

/// An in-process secondary MMU: a whole-space mirror that caches device
/// translations, drops them on invalidation start, refuses to install new
/// ones until the matching end, reports written pages dirty, tracks its own
/// accessed bits, and reaches memory only through the checked DMA service.
final class MirrorDevice: AddressSpaceSubscriber, @unchecked Sendable {
    struct Entry { var translation: DeviceTranslation; var written: Bool; var young: Bool }
    struct State {
        var entries: [UInt64: Entry] = [:]
        var open: [InvalidationRange] = []
        var events: [NotifierEvent] = []
        var changePTEs: [PrimaryPTE] = []
        var released = false
        /// Translations this device lost to reclaim (`vmscan`).
        var evictedEntries = 0
    }

    let subscriberName: String
    let capabilities: SubscriberCapabilities
    let machine: Machine
    let space: AddressSpace
    let state: SpinLocked<State>
    /// Answer non-blockable starts with retry whenever this is set.
    let refuseNonBlockable = Atomic<Bool>(false)
    /// Skip start/end of ksm events (it handles changePTE instead;
    /// docs/CONTRACT.md, rule 13).
    let skipKSMRanges: Bool
    /// At a start, finish the in-flight DMA to the range (read each page
    /// once more) before dropping it, as a real device drains its queues.
    let drainOnStart = Atomic<Bool>(false)

    init(_ name: String, machine: Machine, space: AddressSpace, capabilities: SubscriberCapabilities = [.youngTracking], skipKSMRanges: Bool = false) {
        subscriberName = name
        self.machine = machine
        self.space = space
        self.capabilities = capabilities
        self.skipKSMRanges = skipKSMRanges
        state = SpinLocked(State(), name: name, domain: machine.sync)
    }

    var events: [NotifierEvent] { state.withLock { $0.events } }
    var entryCount: Int { state.withLock { $0.entries.count } }

    func invalidateRangeStart(_ range: InvalidationRange) -> StartResult {
        if !range.blockable && refuseNonBlockable.load(ordering: .relaxed) { return .retry }
        if skipKSMRanges && range.event == .ksm {
            state.withLock { $0.events.append(range.event) }
            return .ok
        }
        let drain = drainOnStart.load(ordering: .relaxed)
        state.withLock { s in
            s.events.append(range.event)
            s.open.append(range)
            for (address, entry) in s.entries where range.contains(address) {
                if drain { _ = machine.dmaRead(space, entry.translation) }
                if entry.written { machine.setDirty(entry.translation.frame) }
                if range.event == .vmscan { s.evictedEntries += 1 }
                s.entries.removeValue(forKey: address)
            }
        }
        return .ok
    }

    func invalidateRangeEnd(_ range: InvalidationRange) {
        if skipKSMRanges && range.event == .ksm { return }
        state.withLock { s in
            if let i = s.open.firstIndex(of: range) { s.open.remove(at: i) }
        }
    }

    func clearYoung(addressSpace: AddressSpaceID, start: UInt64, end: UInt64) -> Bool {
        state.withLock { s in
            var young = false
            for (address, entry) in s.entries where address >= start && address < end && entry.young {
                s.entries[address]!.young = false
                young = true
            }
            return young
        }
    }

    func testYoung(addressSpace: AddressSpaceID, address: UInt64) -> Bool {
        state.withLock { $0.entries[address]?.young ?? false }
    }

    func changePTE(addressSpace: AddressSpaceID, _ pte: PrimaryPTE) {
        state.withLock { s in
            s.changePTEs.append(pte)
            guard var entry = s.entries[pte.address] else { return }
            if entry.written { machine.setDirty(entry.translation.frame) }
            // Repoint the translation at the new frame, read-only.
            let generation = machine.memory.generation(of: Int32(pte.frame.rawValue))
            entry.translation = DeviceTranslation(
                address: pte.address, frame: pte.frame, generation: generation, writable: false, pinned: false)
            entry.written = false
            s.entries[pte.address] = entry
        }
    }

    func release(addressSpace: AddressSpaceID) {
        state.withLock { s in
            for entry in s.entries.values where entry.written { machine.setDirty(entry.translation.frame) }
            s.entries.removeAll()
            s.released = true
        }
    }

    /// Faults `address` into the device (if needed) and reads its payload by DMA.
    func read(_ address: UInt64) throws(MemoryError) -> [UInt8] {
        try access(address, write: nil)
    }

    /// Writes `bytes` to the page by DMA, faulting a writable translation in first.
    func write(_ address: UInt64, _ bytes: [UInt8]) throws(MemoryError) {
        _ = try access(address, write: bytes)
    }

    private func access(_ address: UInt64, write bytes: [UInt8]?) throws(MemoryError) -> [UInt8] {
        let wantWrite = bytes != nil
        for attempt in 0..<1_000 {
            // An invalidation of the page may be in progress: back off and
            // let it finish, as a device retrying a fault would.
            if attempt > 2 { machine.sync.sleep(for: .microseconds(20)) }
            let done = state.withLock { s -> [UInt8]? in
                guard var entry = s.entries[address], !wantWrite || entry.translation.writable else { return nil }
                entry.young = true
                if let bytes {
                    machine.dmaWrite(space, entry.translation, bytes)
                    entry.written = true
                    s.entries[address] = entry
                    return bytes
                }
                s.entries[address] = entry
                return machine.dmaRead(space, entry.translation)
            }
            if let done { return done }
            // Fault: translate outside the device lock, install only if no
            // invalidation of the page started meanwhile.
            let translations = try space.faultRange(start: address, length: page, write: wantWrite)
            let generationBefore = translations[0].generation
            state.withLock { s in
                guard !s.released, !s.open.contains(where: { $0.contains(address) }) else { return }
                // The frame must still be what the primary maps (the
                // whole-space mirror has no sequence count; it re-checks).
                let pte = space.translate(address)
                guard pte.isPresent, UInt64(pte.frame) == translations[0].frame.rawValue,
                    machine.memory.generation(of: pte.frame) == generationBefore, !wantWrite || pte.isWritable
                else { return }
                // Writable only if it still is: a read fault may have taken a
                // writable translation that a finished invalidation (fork's
                // write-protect, say) has made read-only since.
                let t = translations[0]
                let translation = DeviceTranslation(
                    address: t.address, frame: t.frame, generation: t.generation, writable: t.writable && pte.isWritable, pinned: t.pinned)
                s.entries[address] = Entry(translation: translation, written: false, young: true)
            }
        }
        throw .invalidArgument("device could not fault 0x\(String(address, radix: 16)) in 1,000 tries")
    }
}
