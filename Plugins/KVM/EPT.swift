import Synchronization

/// One entry of the two-dimensional page table's second stage (Intel's EPT,
/// AMD's NPT): guest frame -> host frame, in one 64-bit word so that vCPUs
/// can set the accessed and dirty bits without the MMU lock, as hardware
/// does. Bits 32...63 hold the host frame; the frame's generation lives
/// beside the word (`Memslot.generations`), written under the MMU lock.
struct EPTEntry: Equatable {
    var bits: UInt64

    static let present: UInt64 = 1 << 0
    /// The guest may write through the entry now.
    static let writable: UInt64 = 1 << 1
    /// The primary allowed writing when the entry was made (KVM's
    /// "host-writable"): a write-protected entry with this bit may be made
    /// writable again without asking the primary (dirty logging's fast path).
    static let hostWritable: UInt64 = 1 << 2
    static let accessed: UInt64 = 1 << 3
    static let dirty: UInt64 = 1 << 4

    static let none = EPTEntry(bits: 0)

    init(bits: UInt64) { self.bits = bits }

    init(frame: UInt64, writable: Bool, hostWritable: Bool, accessed: Bool, dirty: Bool) {
        var bits = Self.present | frame << 32
        if writable { bits |= Self.writable }
        if hostWritable { bits |= Self.hostWritable }
        if accessed { bits |= Self.accessed }
        if dirty { bits |= Self.dirty }
        self.bits = bits
    }

    var isPresent: Bool { bits & Self.present != 0 }
    var isWritable: Bool { bits & Self.writable != 0 }
    var isHostWritable: Bool { bits & Self.hostWritable != 0 }
    var isAccessed: Bool { bits & Self.accessed != 0 }
    var isDirty: Bool { bits & Self.dirty != 0 }
    var frame: UInt64 { bits >> 32 }
    /// What the zap of this entry must report to the primary: a writable
    /// entry may have been written by a vCPU whose TLB held it, even if the
    /// dirty bit never reached the word (KVM: `kvm_set_pfn_dirty` for a
    /// writable spte).
    var mayBeDirty: Bool { isPresent && bits & (Self.writable | Self.dirty) != 0 }
}

/// A memslot (`KVM_SET_USER_MEMORY_REGION`): guest frames `[firstGFN,
/// firstGFN + pages)` backed by `[hva, hva + pages * 4096)` of the VM's
/// address space, with their EPT entries, dirty bitmap and bookkeeping.
///
/// `entries` are atomic words (vCPUs update accessed and dirty bits without
/// the MMU lock); everything else is guarded by the VM's MMU lock.
final class Memslot: @unchecked Sendable {
    // @unchecked: see above; `entries` is freed in deinit, after the slot
    // was removed and every vCPU that could hold a pointer into it flushed.
    let id: UInt32
    let firstGFN: UInt64
    let pages: UInt64
    let hva: UInt64
    let writable: Bool
    unowned let vm: VM

    let entries: UnsafeMutablePointer<Atomic<UInt64>>
    var generations: [UInt32]
    /// `KVM_GET_DIRTY_LOG`'s bitmap: guest frames written since the last get.
    var dirtyBitmap: [UInt64]
    var dirtyLogging = false
    /// Guest frames whose entry a `ksm` invalidation zapped and that have not
    /// faulted back yet: the refaults change_pte exists to save.
    var zappedByKSM: [UInt64]
    var deleted = false

    init(id: UInt32, vm: VM, firstGFN: UInt64, pages: UInt64, hva: UInt64, writable: Bool) {
        self.id = id
        self.vm = vm
        self.firstGFN = firstGFN
        self.pages = pages
        self.hva = hva
        self.writable = writable
        entries = .allocate(capacity: Int(pages))
        for index in 0..<Int(pages) { (entries + index).initialize(to: Atomic(0)) }
        generations = [UInt32](repeating: 0, count: Int(pages))
        dirtyBitmap = [UInt64](repeating: 0, count: Int((pages + 63) / 64))
        zappedByKSM = dirtyBitmap
    }

    deinit {
        entries.deinitialize(count: Int(pages))
        entries.deallocate()
    }

    var lastGFN: UInt64 { firstGFN + pages }
    var hvaEnd: UInt64 { hva + pages * 4096 }

    func contains(gfn: UInt64) -> Bool { gfn >= firstGFN && gfn < lastGFN }

    func entry(_ index: Int) -> EPTEntry { EPTEntry(bits: entries[index].load(ordering: .acquiring)) }

    /// The host address of the page at `index`.
    func hva(of index: Int) -> UInt64 { hva + UInt64(index) * 4096 }

    /// The indices of the pages of `[start, end)` (host addresses) this slot
    /// maps, or an empty range.
    func indices(hvaStart start: UInt64, hvaEnd end: UInt64) -> Range<Int> {
        let low = max(start, hva)
        let high = min(end, hvaEnd)
        guard low < high else { return 0..<0 }
        return Int((low - hva) / 4096)..<Int((high - hva + 4095) / 4096)
    }

    static func test(_ bitmap: [UInt64], _ index: Int) -> Bool { bitmap[index / 64] & (1 << UInt64(index % 64)) != 0 }
    static func set(_ bitmap: inout [UInt64], _ index: Int) { bitmap[index / 64] |= 1 << UInt64(index % 64) }
    static func clear(_ bitmap: inout [UInt64], _ index: Int) { bitmap[index / 64] &= ~(1 << UInt64(index % 64)) }
}

/// The reverse map: host frame -> the EPT entries mapping it (KVM's rmap,
/// indexed here by host frame so a repoint or a check can find every alias
/// of a frame). Guarded by the VM's MMU lock.
struct ReverseMap {
    /// An entry: memslot id in the high half, page index in the low half.
    typealias Ref = UInt64
    private(set) var mappings: [UInt64: [Ref]] = [:]
    private(set) var count = 0

    static func ref(_ slot: Memslot, _ index: Int) -> Ref { UInt64(slot.id) << 32 | UInt64(index) }

    mutating func add(frame: UInt64, _ ref: Ref) {
        mappings[frame, default: []].append(ref)
        count += 1
    }

    mutating func remove(frame: UInt64, _ ref: Ref) {
        guard var refs = mappings[frame], let position = refs.firstIndex(of: ref) else {
            preconditionFailure("KVM rmap: frame \(frame) has no entry \(ref)")
        }
        refs.swapAt(position, refs.count - 1)
        refs.removeLast()
        mappings[frame] = refs.isEmpty ? nil : refs
        count -= 1
    }

    func entries(of frame: UInt64) -> [Ref] { mappings[frame] ?? [] }
}
