import LabSync
import MMUNotifier
import VirtualMemory

/// The model's counterpart of the runner's KVM guest: a whole-address-space
/// subscriber, as KVM's MMU notifier is, that keeps a translation per guest
/// page the way KVM's shadow page table does. A guest access uses the
/// translation it has (through the checked DMA service); a miss faults the
/// page in through `faultRange` (KVM: `hva_to_pfn`, a `get_user_pages`) and
/// keeps the translation, writable if the primary maps it writable (KVM's
/// `map_writable`). An invalidation start drops the translations in its
/// range, reporting every writable one dirty as it goes: the runner's KVM
/// is a shadow MMU (PVM) whose shadow PTEs carry no accessed/dirty bits,
/// and KVM then counts every writable SPTE dirty when it zaps it
/// (`is_dirty_spte`), so a page the guest merely read through a writable
/// mapping becomes dirty too (a lazily freed page is kept by reclaim). An
/// aging call clears the accessed bits; release drops all.
///
/// It records every invalidation start and every aging call, in order: the
/// model's view of what the runner reads from `kvm:kvm_unmap_hva_range` and
/// `kvm:kvm_age_hva`. Used from one thread at a time.
final class ModelGuest: AddressSpaceSubscriber, @unchecked Sendable {
    struct Entry {
        var translation: DeviceTranslation
        var young: Bool
    }

    struct State {
        var entries: [UInt64: Entry] = [:]
        var invalidations: [RawRange] = []
        var agings: [RawRange] = []
    }

    let subscriberName = "kernel-diff guest"
    /// KVM answers aging (`clear_young`, `test_young`); it has no
    /// `change_pte` since Linux 6.9.
    let capabilities: SubscriberCapabilities = [.youngTracking]
    private let machine: Machine
    private let space: AddressSpace
    private let state: SpinLocked<State>

    init(machine: Machine, space: AddressSpace) {
        self.machine = machine
        self.space = space
        state = SpinLocked(State(), name: "kernel-diff guest", domain: machine.sync)
    }

    func invalidateRangeStart(_ range: InvalidationRange) -> StartResult {
        state.withLock { s in
            s.invalidations.append(RawRange(start: range.start, end: range.end, cause: "\(range.event)"))
            for (address, entry) in s.entries where range.contains(address) {
                if entry.translation.writable { machine.setDirty(entry.translation.frame) }
                s.entries.removeValue(forKey: address)
            }
        }
        return .ok
    }

    func invalidateRangeEnd(_ range: InvalidationRange) {}

    func clearYoung(addressSpace: AddressSpaceID, start: UInt64, end: UInt64) -> Bool {
        state.withLock { s in
            s.agings.append(RawRange(start: start, end: end, cause: "clear_young"))
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

    func release(addressSpace: AddressSpaceID) {
        state.withLock { $0.entries.removeAll() }
    }

    /// The invalidations and aging calls since the last call.
    func drainEvents() -> (invalidations: [RawRange], agings: [RawRange]) {
        state.withLock { s in
            defer {
                s.invalidations.removeAll()
                s.agings.removeAll()
            }
            return (s.invalidations, s.agings)
        }
    }

    /// A guest read of the page at host-virtual `address`.
    func read(_ address: UInt64) -> Outcome {
        access(address, write: nil)
    }

    /// A guest write of `value` to the page at host-virtual `address`.
    func write(_ address: UInt64, _ value: UInt32) -> Outcome {
        access(address, write: value)
    }

    private func access(_ address: UInt64, write value: UInt32?) -> Outcome {
        // A translation faulted in can be invalidated before it is used
        // (the fault itself may break copy-on-write); a few rounds settle it.
        for _ in 0..<8 {
            let done = state.withLock { s -> Outcome? in
                guard var entry = s.entries[address], value == nil || entry.translation.writable else { return nil }
                entry.young = true
                s.entries[address] = entry
                if let value {
                    machine.dmaWrite(space, entry.translation, bytes(value))
                    machine.setDirty(entry.translation.frame)  // KVM marks a page dirty when it maps it for a write
                    return .ok
                }
                return .value(word(machine.dmaRead(space, entry.translation)))
            }
            if let done { return done }
            let translation: DeviceTranslation
            do {
                translation = try space.faultRange(start: address, length: 4096, write: value != nil)[0]
            } catch {
                switch error {
                case .segmentationFault, .protectionFault: return .fault  // KVM_RUN: EFAULT
                default: return .error(error.description)
                }
            }
            state.withLock { $0.entries[address] = Entry(translation: translation, young: true) }
        }
        return .error("the guest's translation of 0x\(String(address, radix: 16)) kept being invalidated")
    }
}
