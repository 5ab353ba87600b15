import LabSync
public import MMUNotifier
import Synchronization

extension AddressSpace {
    /// A copy of this address space (Linux: `fork`). Private anonymous
    /// pages become copy-on-write: the parent's PTEs are write-protected
    /// under a `writeProtect` invalidation (so secondaries drop their
    /// writable translations) and both sides share the frames read-only.
    /// Shared mappings are shared. The child starts with no subscribers.
    public func fork() throws(MemoryError) -> AddressSpace {
        try checkAlive()
        let child = machine.makeAddressSpace()
        try mmapLock.withExclusive { () throws(MemoryError) in
            // Device-private pages come home first, so parent and child
            // share system frames copy-on-write. (Linux instead shares the
            // device page read-only; the lab keeps one mapping per device
            // page, which is what its reverse map and eviction rely on.)
            // Only on a machine that has device memory: this walks every entry.
            if machine.hasDeviceMemory {
                for vma in vmas where vma.kind == .anonymousPrivate { _ = try bringHome(vma.start, vma.end, from: nil) }
            }
            for vma in vmas {
                let copy = VMA(start: vma.start, end: vma.end, protection: vma.protection, kind: vma.kind,
                               pageOffset: vma.pageOffset, region: vma.region, file: vma.file, space: child)
                copy.mergeable = vma.mergeable
                child.link(copy)
                child.vmas.append(copy)
                // Each entry is copied into the child under the parent's
                // page-table lock (the child's nested inside), so a
                // migration that is restoring entries through the rmap sees
                // parent and child consistently. Migration entries are copied
                // too: the migration restores every one it finds, the
                // child's included.
                let share = { (address: UInt64, pte: PTE) in
                    if pte.isPresent {
                        self.memory.addMapping(pte.frame)
                        child.residentPages.add(1, ordering: .relaxed)
                    } else if pte.isSwap {
                        self.machine.swap.retain(pte.swapSlot)
                    }
                    child.ptl.withLock { child.pageTable.set(address >> 12, pte.with(accessed: false)) }
                }
                if vma.kind == .anonymousPrivate {
                    invalidateBlocking(vma.start, vma.end, .writeProtect) { address, pte, _ in
                        if pte.isPresent { pte = pte.with(writable: false) }
                        if pte.isMigration { pte = .migration(frame: pte.frame, writable: false) }
                        share(address, pte)
                    }
                } else {
                    ptl.withLock {
                        pageTable.forEachEntry(from: vma.start >> 12, to: vma.end >> 12) { vpn, pte in
                            if !pte.isNone { share(vpn << 12, pte) }
                        }
                    }
                }
            }
        }
        return child
    }

    /// Tears the address space down (Linux: `exit_mmap`): first the
    /// notifier release (seed 002: every secondary lets go before the mm
    /// goes), then every mapping is unmapped with the `exit` event and every
    /// frame and swap slot it held is returned. Idempotent.
    public func exit() {
        guard stateWord.exchange(State.exited.rawValue, ordering: .acquiringAndReleasing) != State.exited.rawValue else { return }
        notifiers.release()
        mmapLock.withExclusive {
            for vma in vmas {
                invalidateBlocking(vma.start, vma.end, .exit) { _, pte, released in zap(&pte, &released) }
                unlink(vma)
            }
            vmas.removeAll()
        }
        machine.forget(self)
    }

    /// Clears the soft-dirty bits (Linux: writing 4 to `clear_refs`): PTEs
    /// are write-protected under a `softDirty` invalidation, so the next
    /// write faults and marks the page soft-dirty again.
    public func clearSoftDirty() throws(MemoryError) {
        try checkAlive()
        mmapLock.withShared {
            for vma in vmas {
                invalidateBlocking(vma.start, vma.end, .softDirty) { _, pte, _ in
                    if pte.isPresent { pte = pte.with(softDirty: false).with(writable: false) }
                }
            }
        }
    }

    /// The addresses in `[start, start + length)` whose PTE is soft-dirty.
    public func softDirtyPages(start: UInt64, length: UInt64) -> [UInt64] {
        var pages: [UInt64] = []
        ptl.withLock {
            pageTable.forEachEntry(from: start >> 12, to: (start + length) >> 12) { vpn, pte in
                if pte.isPresent && pte.isSoftDirty { pages.append(vpn << 12) }
            }
        }
        return pages
    }

    /// Frames this address space maps, with their addresses (tests, reports).
    public func mappedFrames() -> [(address: UInt64, frame: PageFrameNumber)] {
        mmapLock.withShared {
            var result: [(UInt64, PageFrameNumber)] = []
            ptl.withLock {
                for vma in vmas {
                    pageTable.forEachEntry(from: vma.start >> 12, to: vma.end >> 12) { vpn, pte in
                        if pte.isPresent { result.append((vpn << 12, PageFrameNumber(pte.frame))) }
                    }
                }
            }
            return result
        }
    }
}
