import CDevicePluginABI
import DevicePluginKit
import Synchronization

/// A virtual machine on one address space: its memslots, its EPT (the
/// entries live in the memslots), the reverse map, its vCPUs, and the one
/// whole-address-space notifier KVM registers (`kvm_init_mmu_notifier`).
///
/// The MMU lock (a spin lock, as `kvm->mmu_lock`) guards the memslot list,
/// the generations, bitmaps and reverse map, the invalidation count and
/// range. The sequence (`mmu_invalidate_seq`) is written under it and read
/// without it by the fault path before it looks the page up.
final class VM: SpaceSubscription, @unchecked Sendable {
    // @unchecked: state is guarded as described above.
    let host: Host
    let addressSpace: UInt64
    let counters: KVMCounters
    /// Whether this VM handles change_pte and so skips start/end of `ksm`
    /// invalidations (Andrea Arcangeli, linux-kernel, 2014-04-02, "Re:
    /// [PATCH] mm/mmu_notifier: restore set_pte_at_notify semantics").
    let handlesChangePTE: Bool
    let mmuLock: HostLock
    let vcpus: VCPUTable
    /// Option `flush-delay-us` (testing).
    let flushDelayNanoseconds: UInt64

    var slots: [Memslot] = []
    private var nextSlotID: UInt32 = 1
    /// `mmu_invalidate_in_progress` and the union of the ranges in progress
    /// (host addresses).
    var invalidationsInProgress = 0
    var rangeStart: UInt64 = 0
    var rangeEnd: UInt64 = 0
    let sequence = Atomic<UInt64>(0)
    var rmap = ReverseMap()
    /// Flush requests change_pte made and the end of the `ksm` invalidation
    /// still has to wait for, and how many change_pte calls made them.
    var pendingKSMFlush = VCPUTable.Ticket()
    var pendingKSMFlushers = 0
    /// Zappers that changed entries under the lock and have not finished
    /// their flush yet (KVM's old `tlbs_dirty`). A zapper that finds nothing
    /// left to zap must still flush while this is not zero: the entries are
    /// gone, but a vCPU may still hold them in its TLB, and the primary may
    /// free the page as soon as this invalidation ends.
    var flushesOutstanding = 0
    /// The address space went away (`release`): nothing maps any more.
    var released = false

    /// KVM's limit is 32764 user memslots; this model's is smaller.
    static let maximumMemslots = 512

    init(host: Host, addressSpace: UInt64, counters: KVMCounters, configuration: KVM.Configuration) {
        self.host = host
        self.addressSpace = addressSpace
        self.counters = counters
        handlesChangePTE = configuration.changePTE
        flushDelayNanoseconds = configuration.flushDelayMicroseconds * 1_000
        mmuLock = host.makeLock("kvm mmu_lock", spin: true)
        vcpus = VCPUTable(host: host, capacity: configuration.vcpus, tlbEntries: configuration.tlbEntries)
        var capabilities = UInt32(MMULAB_CAP_YOUNG)
        if configuration.changePTE { capabilities |= UInt32(MMULAB_CAP_CHANGE_PTE) }
        super.init(capabilities: capabilities)
    }

    // MARK: - Memslots

    /// `KVM_SET_USER_MEMORY_REGION` creating a slot. Guest-physical ranges
    /// may not overlap (KVM: -EEXIST); host ranges may (aliases).
    func addMemslot(firstGFN: UInt64, pages: UInt64, hva: UInt64, writable: Bool) throws(PluginError) -> Memslot {
        try mmuLock.withLock { () throws(PluginError) -> Memslot in
            guard !released else { throw PluginError(status: Int32(MMULAB_ERR_KILLED), "the VM's address space has exited") }
            guard slots.count < Self.maximumMemslots else { throw .noMemory("at most \(Self.maximumMemslots) memslots per VM") }
            if let clash = slots.first(where: { firstGFN < $0.lastGFN && $0.firstGFN < firstGFN + pages }) {
                throw .invalid("guest-physical range overlaps memslot \(clash.id) at gpa 0x\(String(clash.firstGFN << 12, radix: 16))")
            }
            let slot = Memslot(id: nextSlotID, vm: self, firstGFN: firstGFN, pages: pages, hva: hva, writable: writable)
            nextSlotID += 1
            slots.append(slot)
            slots.sort { $0.firstGFN < $1.firstGFN }
            return slot
        }
    }

    /// Deleting a slot (`kvm_invalidate_memslot`): its entries go, faults in
    /// flight on it retry and find it gone, every vCPU flushes.
    func removeMemslot(_ slot: Memslot) {
        changeEntriesThenFlush(always: true) {
            slots.removeAll { $0 === slot }
            slot.deleted = true
            let zapped = zap(slot, 0..<Int(slot.pages), byKSM: false)
            counters[.entriesZapped].bump(UInt64(zapped))
            sequence.add(1, ordering: .releasing)
            return zapped
        }
    }

    /// Runs `body` under the MMU lock (it zaps or write-protects entries and
    /// returns how many it changed), then flushes remote TLBs outside the
    /// lock if it changed any, if `always`, or if another zapper's flush is
    /// still outstanding (see `flushesOutstanding`). Real KVM flushes before
    /// it unlocks; the model cannot, as a vCPU in guest mode takes the lock
    /// to walk the EPT, so the flush is announced under the lock instead.
    @discardableResult
    func changeEntriesThenFlush(always: Bool = false, _ body: () -> Int) -> Int {
        let (changed, flush) = mmuLock.withLock { () -> (Int, Bool) in
            let changed = body()
            let flush = always || changed > 0 || flushesOutstanding > 0
            if flush { flushesOutstanding += 1 }
            return (changed, flush)
        }
        if flush {
            if flushDelayNanoseconds > 0 && !host.isNonBlockable { host.sleep(nanoseconds: flushDelayNanoseconds) }
            flushRemoteTLBs()
            mmuLock.withLock { flushesOutstanding -= 1 }
        }
        return changed
    }

    /// The slot mapping a guest frame (MMU lock held).
    func slot(containing gfn: UInt64) -> Memslot? {
        var low = 0
        var high = slots.count
        while low < high {
            let middle = (low + high) / 2
            if slots[middle].lastGFN <= gfn { low = middle + 1 } else { high = middle }
        }
        return low < slots.count && slots[low].contains(gfn: gfn) ? slots[low] : nil
    }

    // MARK: - Invalidation (virt/kvm/kvm_main.c)

    /// `kvm_mmu_notifier_invalidate_range_start`: count the invalidation in,
    /// widen the range in progress, zap, flush. Never refuses: for a
    /// non-blockable range KVM only zaps without yielding, and so does this
    /// (the flush spins, it does not sleep).
    override func invalidateRangeStart(_ range: InvalidationRange) -> Bool {
        counters[.invalidations].bump()
        if !range.isBlockable { counters[.nonBlockableInvalidations].bump() }
        if handlesChangePTE && range.event == MMULAB_EVENT_KSM.rawValue {
            // With change_pte, the ksm start and end have nothing to do
            // (the 2014 thread cited at `handlesChangePTE`); change_pte keeps
            // the entries pointing at the right page.
            counters[.ksmStartsSkipped].bump()
            return true
        }
        changeEntriesThenFlush {
            invalidationsInProgress += 1
            if invalidationsInProgress == 1 {
                rangeStart = range.start
                rangeEnd = range.end
            } else {
                rangeStart = min(rangeStart, range.start)
                rangeEnd = max(rangeEnd, range.end)
            }
            return zap(hvaStart: range.start, hvaEnd: range.end, byKSM: range.event == MMULAB_EVENT_KSM.rawValue)
        }
        return true
    }

    /// `kvm_mmu_notifier_invalidate_range_end`: the sequence moves (a fault
    /// that looked the page up before it retries), then the count drops.
    override func invalidateRangeEnd(_ range: InvalidationRange) {
        if handlesChangePTE && range.event == MMULAB_EVENT_KSM.rawValue {
            // change_pte ran under the primary's page-table lock, which the
            // model's DMA takes, so it could not wait for vCPUs in guest mode
            // there (Linux's IPIs interrupt a spinning CPU; the model cannot).
            // It asked them to flush; this waits for the acknowledgements,
            // before the primary frees the old page.
            // Another zapper's flush may also be outstanding (it emptied an
            // entry this change_pte then found absent): flush for it too.
            let (ticket, othersOutstanding) = mmuLock.withLock { () -> (VCPUTable.Ticket, Bool) in
                defer {
                    flushesOutstanding -= pendingKSMFlushers
                    pendingKSMFlushers = 0
                    pendingKSMFlush = VCPUTable.Ticket()
                }
                return (pendingKSMFlush, flushesOutstanding > pendingKSMFlushers)
            }
            counters[.flushWaits].bump(UInt64(vcpus.wait(ticket)))
            if othersOutstanding { flushRemoteTLBs() }
            return
        }
        mmuLock.withLock {
            sequence.add(1, ordering: .releasing)
            invalidationsInProgress -= 1
            precondition(invalidationsInProgress >= 0, "KVM: invalidate_range_end without a start")
        }
    }

    /// `mmu_invalidate_retry_gfn` (MMU lock held): an invalidation of the
    /// page is in progress, or one ended since `seq` was read.
    func mustRetry(hva: UInt64, since seq: UInt64) -> Bool {
        if invalidationsInProgress > 0 && hva >= rangeStart && hva < rangeEnd { return true }
        return sequence.load(ordering: .relaxed) != seq
    }

    /// Zaps the entries mapping `[hvaStart, hvaEnd)` in every slot (MMU lock
    /// held); returns how many there were.
    func zap(hvaStart: UInt64, hvaEnd: UInt64, byKSM: Bool) -> Int {
        var zapped = 0
        for slot in slots {
            zapped += zap(slot, slot.indices(hvaStart: hvaStart, hvaEnd: hvaEnd), byKSM: byKSM)
        }
        counters[.entriesZapped].bump(UInt64(zapped))
        return zapped
    }

    /// Zaps entries of one slot (MMU lock held): the word goes to zero in one
    /// exchange, so a vCPU setting an accessed or dirty bit either lands
    /// before (and is seen here) or fails (and sets nothing).
    func zap(_ slot: Memslot, _ indices: Range<Int>, byKSM: Bool) -> Int {
        var zapped = 0
        for index in indices {
            let old = EPTEntry(bits: slot.entries[index].exchange(0, ordering: .acquiringAndReleasing))
            guard old.isPresent else { continue }
            reportDirtyIfWritten(old, slot, index)
            rmap.remove(frame: old.frame, ReverseMap.ref(slot, index))
            if byKSM {
                Memslot.set(&slot.zappedByKSM, index)
                counters[.ksmZaps].bump()
            }
            zapped += 1
        }
        return zapped
    }

    /// A writable or dirty entry going away (or losing write access) tells
    /// the primary the page may have been written (a device write must reach
    /// the backing store: Andrea Arcangeli, linux-kernel/kvm-devel, 2008-01-24,
    /// "Re: [kvm-devel] [PATCH] export notifier #1").
    func reportDirtyIfWritten(_ old: EPTEntry, _ slot: Memslot, _ index: Int) {
        guard old.mayBeDirty else { return }
        host.setDirty(PFN(address: slot.hva(of: index), pfn: old.frame, generation: slot.generations[index], flags: 0))
        counters[.pagesDirtied].bump()
    }

    /// `kvm_flush_remote_tlbs`: every vCPU flushes; those in guest mode are
    /// waited for. Not under the MMU lock: a vCPU in guest mode may be
    /// walking the EPT, which takes it.
    func flushRemoteTLBs() {
        counters[.flushRequests].bump()
        counters[.flushWaits].bump(UInt64(vcpus.wait(vcpus.requestFlush())))
    }

    // MARK: - change_pte (docs/CONTRACT.md, rule 13)

    /// KSM pointed the primary PTE at `pfn` (read-only), under the primary's
    /// page-table lock. Entries mapping the page keep existing, read-only, at
    /// the new frame (`kvm_set_spte_gfn`); a writable new PTE zaps instead,
    /// as KVM did. The sequence always moves: start and end were skipped,
    /// so a fault that looked the old PTE up must learn of it here.
    override func changePTE(addressSpace: UInt64, _ pfn: PFN) {
        mmuLock.withLock {
            var changed = false
            for slot in slots {
                for index in slot.indices(hvaStart: pfn.address, hvaEnd: pfn.address + 4096) {
                    guard slot.entry(index).isPresent else { continue }
                    changed = true
                    if pfn.isWritable {
                        counters[.entriesZapped].bump(UInt64(zap(slot, index..<index + 1, byKSM: false)))
                        continue
                    }
                    repoint(slot, index, to: pfn)
                }
            }
            sequence.add(1, ordering: .releasing)
            if changed {
                pendingKSMFlush.merge(vcpus.requestFlush())
                pendingKSMFlushers += 1
                flushesOutstanding += 1  // until the ksm end has waited
            }
        }
    }

    /// Points a present entry read-only at `pfn`, keeping its accessed bit.
    private func repoint(_ slot: Memslot, _ index: Int, to pfn: PFN) {
        var current = slot.entries[index].load(ordering: .acquiring)
        while true {
            let old = EPTEntry(bits: current)
            let new = EPTEntry(frame: pfn.pfn, writable: false, hostWritable: false, accessed: old.isAccessed, dirty: false)
            let (exchanged, seen) = slot.entries[index].compareExchange(
                expected: current, desired: new.bits, ordering: .acquiringAndReleasing)
            if !exchanged {
                current = seen  // a vCPU set an accessed or dirty bit meanwhile
                continue
            }
            reportDirtyIfWritten(old, slot, index)
            if old.frame == pfn.pfn {
                counters[.changePTEWriteProtects].bump()
            } else {
                let ref = ReverseMap.ref(slot, index)
                rmap.remove(frame: old.frame, ref)
                rmap.add(frame: pfn.pfn, ref)
                counters[.refaultsSaved].bump()
            }
            slot.generations[index] = pfn.generation
            return
        }
    }

    // MARK: - Aging

    /// `kvm_mmu_notifier_clear_flush_young`, as reclaim calls it: clears the
    /// accessed bits of the entries mapping `[start, end)`; true if any was
    /// set, and then the vCPUs' TLBs are flushed, so a vCPU that keeps using
    /// the page walks the EPT again and sets the bit again (a TLB hit sets
    /// nothing: without the flush, a page the guest uses hot would look
    /// cold to the next check).
    override func clearYoung(addressSpace: UInt64, start: UInt64, end: UInt64) -> Bool {
        let young = mmuLock.withLock { () -> Bool in
            var young = false
            for slot in slots {
                for index in slot.indices(hvaStart: start, hvaEnd: end) {
                    let old = EPTEntry(bits: slot.entries[index].bitwiseAnd(~EPTEntry.accessed, ordering: .acquiringAndReleasing).oldValue)
                    if old.isPresent && old.isAccessed {
                        young = true
                        counters[.accessedBitsCleared].bump()
                    }
                }
            }
            return young
        }
        counters[.youngChecks].bump()
        if young {
            counters[.youngAnswers].bump()
            flushRemoteTLBs()  // spins, never sleeps: allowed here
        }
        return young
    }

    /// `kvm_mmu_notifier_test_young`: whether any entry mapping `address`
    /// has its accessed bit set; clears nothing.
    override func testYoung(addressSpace: UInt64, address: UInt64) -> Bool {
        counters[.youngChecks].bump()
        return mmuLock.withLock {
            slots.contains { slot in
                slot.indices(hvaStart: address, hvaEnd: address + 4096).contains {
                    let entry = slot.entry($0)
                    return entry.isPresent && entry.isAccessed
                }
            }
        }
    }

    // MARK: - Release

    /// The address space is going away (`kvm_mmu_notifier_release`): every
    /// entry goes; guest accesses fail from now on.
    override func release(addressSpace: UInt64) {
        changeEntriesThenFlush(always: true) {
            released = true
            sequence.add(1, ordering: .releasing)
            return zap(hvaStart: 0, hvaEnd: UInt64.max, byKSM: false)
        }
        counters[.releases].bump()
    }
}
