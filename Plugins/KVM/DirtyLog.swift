import CDevicePluginABI
import DevicePluginKit
import Synchronization

/// The KVM plugin's `control` commands (ABI 1.2), on a memslot binding.
/// The argument of `getDirtyLog` is a bitmap of `(pages + 63) / 64`
/// little-endian 64-bit words, bit i for the slot's i-th page.
enum KVMCommand: UInt32 {
    /// `KVM_MEM_LOG_DIRTY_PAGES` on: write-protect the slot, start logging.
    case enableDirtyLog = 1
    /// `KVM_GET_DIRTY_LOG`: the pages written since the last get (or the
    /// enable), write-protected again before this returns.
    case getDirtyLog = 2
    /// `KVM_MEM_LOG_DIRTY_PAGES` off.
    case disableDirtyLog = 3
    /// Check the EPT against the reverse map (a test's consistency check):
    /// fails with a description of the first mismatch.
    case verify = 4
}

extension VM {
    /// Starts logging. Already on, it changes nothing: the bits not yet
    /// read stay (KVM keeps the old bitmap on a flags-only update).
    func enableDirtyLog(_ slot: Memslot) {
        changeEntriesThenFlush {
            guard !slot.dirtyLogging else { return 0 }
            slot.dirtyLogging = true
            for index in slot.dirtyBitmap.indices { slot.dirtyBitmap[index] = 0 }
            return (0..<Int(slot.pages)).filter { writeProtect(slot, $0) }.count
        }
    }

    func disableDirtyLog(_ slot: Memslot) {
        mmuLock.withLock { slot.dirtyLogging = false }
    }

    /// Copies and clears the bitmap, write-protects the pages it names, and
    /// flushes before returning (as `kvm_get_dirty_log_protect`): a page
    /// written through a stale writable TLB line meanwhile is in this
    /// bitmap, and the caller copies it after this returns; a later write
    /// faults and lands in the next one.
    func getDirtyLog(_ slot: Memslot, into argument: UnsafeMutableRawBufferPointer) throws(PluginError) {
        let words = slot.dirtyBitmap.count
        guard argument.count >= words * 8, let base = argument.baseAddress else {
            throw .invalid("the dirty log of a \(slot.pages)-page memslot needs \(words * 8) bytes, got \(argument.count)")
        }
        guard mmuLock.withLock({ slot.dirtyLogging }) else { throw .invalid("dirty logging is off for this memslot") }
        var reported = 0
        // Always flushed before returning, whatever changed: see above.
        changeEntriesThenFlush(always: true) {
            guard slot.dirtyLogging else { return 0 }  // turned off meanwhile: nothing to report
            var protected = 0
            for word in 0..<words {
                let bits = slot.dirtyBitmap[word]
                base.storeBytes(of: bits.littleEndian, toByteOffset: word * 8, as: UInt64.self)
                slot.dirtyBitmap[word] = 0
                var rest = bits
                while rest != 0 {
                    let bit = rest.trailingZeroBitCount
                    rest &= rest - 1
                    if writeProtect(slot, word * 64 + bit) { protected += 1 }
                    reported += 1
                }
            }
            return protected
        }
        counters[.dirtyPagesReported].bump(UInt64(reported))
    }

    /// Clears the writable bit of a present entry (MMU lock held), telling
    /// the primary the page may have been written (KVM's `mmu_spte_update`
    /// marks the pfn dirty when a writable spte loses write access).
    /// Returns whether the entry changed.
    private func writeProtect(_ slot: Memslot, _ index: Int) -> Bool {
        var current = slot.entries[index].load(ordering: .acquiring)
        while true {
            let old = EPTEntry(bits: current)
            guard old.isPresent, old.isWritable || old.isDirty else { return false }
            let (exchanged, seen) = slot.entries[index].compareExchange(
                expected: current, desired: current & ~(EPTEntry.writable | EPTEntry.dirty), ordering: .acquiringAndReleasing)
            if exchanged {
                reportDirtyIfWritten(old, slot, index)
                return true
            }
            current = seen
        }
    }

    /// The EPT and the reverse map agree: every present entry is listed
    /// under its frame, and every listed entry is present with that frame.
    func verify() throws(PluginError) {
        let problem = mmuLock.withLock { () -> String? in
            var present = 0
            for slot in slots {
                for index in 0..<Int(slot.pages) {
                    let entry = slot.entry(index)
                    guard entry.isPresent else { continue }
                    present += 1
                    if !rmap.entries(of: entry.frame).contains(ReverseMap.ref(slot, index)) {
                        return "slot \(slot.id) page \(index) maps frame \(entry.frame), which the rmap does not list"
                    }
                }
            }
            if present != rmap.count { return "\(present) present entries, \(rmap.count) in the rmap" }
            for (frame, refs) in rmap.mappings {
                for ref in refs {
                    guard let slot = slots.first(where: { UInt64($0.id) == ref >> 32 }) else {
                        return "the rmap lists frame \(frame) in memslot \(ref >> 32), which is gone"
                    }
                    let entry = slot.entry(Int(ref & 0xFFFF_FFFF))
                    if !entry.isPresent || entry.frame != frame {
                        return "the rmap lists frame \(frame) at slot \(slot.id) page \(ref & 0xFFFF_FFFF), which maps \(entry)"
                    }
                }
            }
            return nil
        }
        if let problem { throw PluginError(status: Int32(MMULAB_ERR_INTERNAL), "EPT check: \(problem)") }
    }
}
