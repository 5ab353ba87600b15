import CDevicePluginABI
import DevicePluginKit
import Synchronization

/// What a vCPU's walk of the EPT found (MMU lock held).
enum WalkOutcome {
    /// A translation the access may use.
    case translation(TLB.Line)
    /// No usable entry: an EPT violation, resolved by the fault path.
    case violation(Memslot, Int)
    case noMemslot
    case readOnlyMemslot
    case released
}

extension VM {
    /// EPT violations one access may take before it gives up: each is a
    /// fault that an invalidation raced with. KVM retries for ever; this is
    /// bounded, so a livelock is an error a test sees, not a hang. With the
    /// back-off of `fault`, the bound is a second or more of retrying.
    static let maximumViolations = 100_000

    /// One guest access by the calling thread's vCPU: enter, translate
    /// through the TLB or the EPT, access the page, exit. A missing or
    /// write-protected entry exits to the fault path and the access runs
    /// again.
    func run(gpa: UInt64, write: Bool, buffer: UnsafeMutableRawBufferPointer) throws(PluginError) {
        guard let vcpu = vcpus.current() else {
            throw .busy("all of the VM's \(vcpus.vcpus.count) vCPUs are taken by other threads (option vcpus)")
        }
        let gfn = gpa >> 12
        for _ in 0..<Self.maximumViolations {
            if vcpu.enter() { counters[.tlbFlushes].bump() }
            if let line = vcpu.tlb.lookup(gfn), !write || line.writable {
                access(through: line, write: write, buffer)
                vcpu.exit()
                counters[.tlbHits].bump()
                return
            }
            // A TLB miss: the hardware walks the EPT (here under the MMU
            // lock, so a walk sees an entry and its generation together).
            let outcome = mmuLock.withLock { walk(gfn, write: write) }
            switch outcome {
            case .translation(let line):
                vcpu.tlb.fill(gfn, pfn: line.pfn, writable: line.writable, word: line.word!)
                access(through: line, write: write, buffer)
                vcpu.exit()
                counters[.tlbMisses].bump()
                return
            case .violation(let slot, let index):
                vcpu.exit()
                counters[.eptViolations].bump()
                try fault(slot, index, write: write)
            case .noMemslot:
                vcpu.exit()
                throw .fault("gpa 0x\(String(gpa, radix: 16)) is in no memslot")
            case .readOnlyMemslot:
                vcpu.exit()
                throw .fault("write to gpa 0x\(String(gpa, radix: 16)) in a read-only memslot")
            case .released:
                vcpu.exit()
                throw PluginError(status: Int32(MMULAB_ERR_KILLED), "the VM's address space has exited")
            }
        }
        throw .busy("gpa 0x\(String(gpa, radix: 16)): still no translation after \(Self.maximumViolations) EPT violations")
    }

    /// The second-stage walk (MMU lock held). Sets the accessed (and for a
    /// write, dirty) bit as the hardware does; a write to an entry that
    /// dirty logging write-protected is made writable again and logged
    /// here without asking the primary (KVM's fast page fault).
    private func walk(_ gfn: UInt64, write: Bool) -> WalkOutcome {
        guard !released else { return .released }
        guard let slot = slot(containing: gfn) else { return .noMemslot }
        if write && !slot.writable { return .readOnlyMemslot }
        let index = Int(gfn - slot.firstGFN)
        var current = slot.entries[index].load(ordering: .acquiring)
        while true {
            let entry = EPTEntry(bits: current)
            guard entry.isPresent else { return .violation(slot, index) }
            var wanted = current | EPTEntry.accessed
            if write {
                guard entry.isWritable || slot.dirtyLogging && entry.isHostWritable else { return .violation(slot, index) }
                wanted |= EPTEntry.writable | EPTEntry.dirty
            }
            if wanted != current {
                let (exchanged, seen) = slot.entries[index].compareExchange(
                    expected: current, desired: wanted, ordering: .acquiringAndReleasing)
                if !exchanged {
                    current = seen
                    continue
                }
                if write && !entry.isWritable {
                    Memslot.set(&slot.dirtyBitmap, index)
                    counters[.dirtyLogFaults].bump()
                }
            }
            let writable = wanted & EPTEntry.writable != 0
            let pfn = PFN(
                address: slot.hva(of: index), pfn: entry.frame, generation: slot.generations[index],
                flags: writable ? UInt32(MMULAB_PFN_WRITABLE) : 0)
            return .translation(TLB.Line(tag: gfn + 1, pfn: pfn, writable: writable, word: slot.entries + index))
        }
    }

    /// The access itself: first the accessed and dirty bits, if the entry
    /// still maps the frame (a vCPU's TLB may outlive its entry until the
    /// flush it is asked for), then DMA through the translation, checked by
    /// the host against the primary.
    ///
    /// The bits come first, as the hardware sets them while it translates:
    /// an access whose bits came after its data could finish, be overtaken
    /// by a young check that found the bit clear, and so look cold to
    /// reclaim although it had used the page; and a zap between a write and
    /// its dirty bit would lose the dirty page.
    private func access(through line: TLB.Line, write: Bool, _ buffer: UnsafeMutableRawBufferPointer) {
        let word = line.word!
        let needed = EPTEntry.accessed | (write ? EPTEntry.dirty : 0)
        var current = word[0].load(ordering: .relaxed)
        while current & needed != needed {
            let entry = EPTEntry(bits: current)
            guard entry.isPresent, entry.frame == line.pfn.pfn else { break }
            let (exchanged, seen) = word[0].compareExchange(expected: current, desired: current | needed, ordering: .relaxed)
            if exchanged { break }
            current = seen
        }
        if write {
            host.dmaWrite(addressSpace: addressSpace, line.pfn, from: UnsafeRawBufferPointer(buffer))
            counters[.guestWrites].bump()
        } else {
            host.dmaRead(addressSpace: addressSpace, line.pfn, into: buffer)
            counters[.guestReads].bump()
        }
    }

    /// The EPT violation handler (`kvm_tdp_page_fault`): snapshot the
    /// sequence, fault the host page in (this may sleep and reclaim), take
    /// the MMU lock, and install unless an invalidation raced with us
    /// (`mmu_invalidate_retry_gfn`). Either way the access runs again.
    private func fault(_ slot: Memslot, _ index: Int, write: Bool) throws(PluginError) {
        // Read before the page is looked up: an invalidation that ends after
        // this moves it, one in progress is caught by its range.
        let seq = sequence.load(ordering: .acquiring)
        let hva = slot.hva(of: index)
        let pfn = try host.faultRange(addressSpace: addressSpace, start: hva, length: 4096, write: write)[0]
        var retrying = false
        mmuLock.withLock {
            guard !slot.deleted, !released else { return }
            if mustRetry(hva: hva, since: seq) {
                counters[.faultRetries].bump()
                retrying = true
                return
            }
            install(slot, index, pfn, write: write)
        }
        // The sequence counts every invalidation of the address space, as
        // KVM's did before 5.13 (newer KVM counts only those that overlap a
        // memslot, which needs two memslot sets to stay consistent), so
        // under reclaim a fault can race often. Running the guest again at
        // once would mostly meet the same invalidation: let it finish.
        if retrying { host.sleep(nanoseconds: 2_000) }
    }

    /// Makes the entry (MMU lock held). Writable if the primary gave a
    /// writable page and the slot allows writes, except that with dirty
    /// logging only a write fault maps writable, and is logged.
    private func install(_ slot: Memslot, _ index: Int, _ pfn: PFN, write: Bool) {
        let hostWritable = pfn.isWritable && slot.writable
        let writable = hostWritable && (write || !slot.dirtyLogging)
        let entry = EPTEntry(frame: pfn.pfn, writable: writable, hostWritable: hostWritable, accessed: true, dirty: write && writable)
        let old = EPTEntry(bits: slot.entries[index].exchange(entry.bits, ordering: .acquiringAndReleasing))
        let ref = ReverseMap.ref(slot, index)
        if old.isPresent {
            // Two vCPUs faulted the page at once: no invalidation came
            // between them (it would have made the later one retry), so the
            // primary gave both the same frame.
            precondition(old.frame == pfn.pfn, "KVM: fault replaced a live entry for frame \(old.frame) by frame \(pfn.pfn)")
            reportDirtyIfWritten(old, slot, index)
            rmap.remove(frame: old.frame, ref)
        }
        slot.generations[index] = pfn.generation
        rmap.add(frame: pfn.pfn, ref)
        if writable && write && slot.dirtyLogging { Memslot.set(&slot.dirtyBitmap, index) }
        if Memslot.test(slot.zappedByKSM, index) {
            Memslot.clear(&slot.zappedByKSM, index)
            counters[.ksmRefaults].bump()
        }
        counters[.pagesInstalled].bump()
    }
}
