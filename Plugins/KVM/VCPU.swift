import DevicePluginKit
import Synchronization

/// A vCPU: a thread of the lab that calls `access` on the VM. Every access
/// is one VM entry and exit (`vcpu_enter_guest`); the vCPU's TLB survives
/// exits, as it does with VPIDs, so a translation the EPT no longer has
/// stays usable until the vCPU flushes it, which it does on entry when a
/// flush was requested (`KVM_REQ_TLB_FLUSH`).
///
/// The protocol with `kvm_flush_remote_tlbs`: the requester sets the
/// request bit, then looks at the vCPU's mode; the vCPU sets its mode to
/// "in guest", then looks at its requests. Both sides use sequentially
/// consistent operations, so at least one sees the other (KVM:
/// `smp_store_mb(vcpu->mode, IN_GUEST_MODE)` against `kvm_make_request`).
/// A vCPU seen in guest mode is waited for until it exits: its access in
/// progress may use the old translation, which the primary allows while
/// the invalidation is in progress, and must be over before it ends.
final class VCPU: @unchecked Sendable {
    // @unchecked: `tlb` belongs to the vCPU's own thread; the rest is atomic.
    static let outsideGuest: UInt8 = 0
    static let inGuest: UInt8 = 1
    static let flushRequest: UInt32 = 1 << 0

    let index: Int
    let mode = Atomic<UInt8>(VCPU.outsideGuest)
    let requests = Atomic<UInt32>(0)
    /// Exits so far: a waiter that saw the vCPU in guest mode waits for
    /// this to move (the vCPU may have exited and entered again meanwhile).
    let exits = Atomic<UInt64>(0)
    var tlb: TLB

    init(index: Int, tlbEntries: Int) {
        self.index = index
        tlb = TLB(entries: tlbEntries)
    }

    /// Enters guest mode, serving requests first. Returns whether the TLB
    /// was flushed.
    @discardableResult
    func enter() -> Bool {
        var flushed = false
        while true {
            if requests.exchange(0, ordering: .acquiringAndReleasing) & Self.flushRequest != 0 {
                tlb.flush()
                flushed = true
            }
            mode.store(Self.inGuest, ordering: .sequentiallyConsistent)
            guard requests.load(ordering: .sequentiallyConsistent) != 0 else { return flushed }
            // A request came in as we entered: serve it before running.
            mode.store(Self.outsideGuest, ordering: .sequentiallyConsistent)
        }
    }

    /// Leaves guest mode; the access before it is complete.
    func exit() {
        mode.store(Self.outsideGuest, ordering: .releasing)
        exits.add(1, ordering: .releasing)
    }
}

/// A vCPU's TLB for the second stage: direct-mapped, guest frame -> the
/// translation and a pointer to the EPT word it came from (for the
/// accessed and dirty bits). Only its own vCPU's thread touches it.
struct TLB {
    struct Line {
        var tag: UInt64 = 0  // gfn + 1; 0: empty
        var pfn = PFN()
        var writable = false
        var word: UnsafeMutablePointer<Atomic<UInt64>>? = nil
    }

    private var lines: [Line]
    private let mask: Int
    private var filled = 0

    init(entries: Int) {
        lines = [Line](repeating: Line(), count: entries)
        mask = entries - 1
    }

    func lookup(_ gfn: UInt64) -> Line? {
        let line = lines[Int(truncatingIfNeeded: gfn) & mask]
        return line.tag == gfn + 1 ? line : nil
    }

    mutating func fill(_ gfn: UInt64, pfn: PFN, writable: Bool, word: UnsafeMutablePointer<Atomic<UInt64>>) {
        let slot = Int(truncatingIfNeeded: gfn) & mask
        if lines[slot].tag == 0 { filled += 1 }
        lines[slot] = Line(tag: gfn + 1, pfn: pfn, writable: writable, word: word)
    }

    mutating func flush() {
        guard filled > 0 else { return }
        for index in lines.indices { lines[index].tag = 0 }
        filled = 0
    }
}

/// The VM's vCPUs, one per thread that ever called `access`, found by the
/// host's id of the calling thread (ABI 1.4 `thread_id`, the same in every
/// replay of a deterministic run) in an open-addressing table (no lock on
/// the access path). At most `capacity` threads over the VM's life.
final class VCPUTable: @unchecked Sendable {
    // @unchecked: `owners` is atomic; `slotOf` cells are written and read
    // only by the thread whose id claimed them; `vcpus` is immutable.
    private let owners: UnsafeMutablePointer<Atomic<UInt>>
    private let slotOf: UnsafeMutablePointer<Int>
    private let tableSize: Int
    let vcpus: [VCPU]
    private let claimed = Atomic<Int>(0)

    /// The host: its thread ids name the calling thread, and the flush wait yields through it.
    let host: Host

    init(host: Host, capacity: Int, tlbEntries: Int) {
        self.host = host
        tableSize = capacity * 2
        owners = .allocate(capacity: tableSize)
        for index in 0..<tableSize { (owners + index).initialize(to: Atomic(0)) }
        slotOf = .allocate(capacity: tableSize)
        slotOf.initialize(repeating: -1, count: tableSize)
        vcpus = (0..<capacity).map { VCPU(index: $0, tlbEntries: tlbEntries) }
    }

    deinit {
        owners.deinitialize(count: tableSize)
        owners.deallocate()
        slotOf.deallocate()
    }

    /// vCPUs in use so far.
    var count: Int { min(claimed.load(ordering: .acquiring), vcpus.count) }

    /// The calling thread's vCPU, made on its first access; nil when every
    /// vCPU is taken.
    func current() -> VCPU? {
        let me = UInt(truncatingIfNeeded: host.currentThreadID ?? 0)
        precondition(me != 0, "the KVM plugin needs the host's thread ids (ABI 1.4)")
        var probe = Int(truncatingIfNeeded: (me &* 0x9E37_79B9_7F4A_7C15) >> 17) % tableSize
        for _ in 0..<tableSize {
            let owner = owners[probe].load(ordering: .relaxed)
            if owner == me { return slotOf[probe] < 0 ? nil : vcpus[slotOf[probe]] }
            if owner == 0 {
                if owners[probe].compareExchange(expected: 0, desired: me, ordering: .acquiringAndReleasing).exchanged {
                    // A thread past the last vCPU keeps its cell, marked
                    // refused (-1), so it is refused again without a claim.
                    let index = claimed.add(1, ordering: .acquiringAndReleasing).oldValue
                    slotOf[probe] = index < vcpus.count ? index : -1
                    return slotOf[probe] < 0 ? nil : vcpus[index]
                }
                continue  // another thread took this cell: look at it again
            }
            probe = (probe + 1) % tableSize
        }
        return nil
    }

    /// vCPUs a flush must wait for: those seen in guest mode, with their
    /// exit count then.
    struct Ticket {
        var waits: [(vcpu: VCPU, exits: UInt64)] = []
        mutating func merge(_ other: Ticket) { waits += other.waits }
    }

    /// Requests a TLB flush from every vCPU (`kvm_make_all_cpus_request`):
    /// a vCPU outside guest mode flushes at its next entry; one in guest
    /// mode must be waited for (`wait`). Never blocks: callable under the
    /// MMU lock and the primary's page-table lock.
    func requestFlush() -> Ticket {
        var ticket = Ticket()
        for vcpu in vcpus.prefix(count) {
            vcpu.requests.bitwiseOr(VCPU.flushRequest, ordering: .sequentiallyConsistent)
            // The exit count is read after the mode: the load that saw "in
            // guest" synchronises with that entry, which came after the
            // exit before it, so the count read now is at least that one's
            // (read first, it could be older, and the wait end too early).
            if vcpu.mode.load(ordering: .sequentiallyConsistent) == VCPU.inGuest {
                ticket.waits.append((vcpu, vcpu.exits.load(ordering: .acquiring)))
            }
        }
        return ticket
    }

    /// Waits until every vCPU of `ticket` has left guest mode once (the
    /// acknowledgement of the flush request). Spins: the wait is one guest
    /// access long, and it must not sleep, as non-blockable invalidations
    /// (the OOM reaper) flush too; KVM waits for its IPIs the same way. Each
    /// round yields through the host, which then runs the vCPU's thread (a
    /// deterministic host runs nothing else while this one spins).
    /// Returns how many vCPUs it had to wait for.
    @discardableResult
    func wait(_ ticket: Ticket) -> Int {
        for (vcpu, exits) in ticket.waits {
            while vcpu.mode.load(ordering: .acquiring) == VCPU.inGuest && vcpu.exits.load(ordering: .acquiring) == exits {
                host.yield()
            }
        }
        return ticket.waits.count
    }
}
