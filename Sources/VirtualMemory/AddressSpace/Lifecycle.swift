import LabSync
public import MMUNotifier
import Synchronization

extension AddressSpace {
    /// A copy of this address space (Linux: `fork`). Private anonymous
    /// pages become copy-on-write: the parent's PTEs are write-protected
    /// under a `writeProtect` invalidation (so secondaries drop their
    /// writable translations) and both sides share the frames read-only;
    /// except a pinned page, which the child gets a copy of at once while
    /// the parent keeps its page and its PTE as they were (Linux:
    /// `copy_present_page`, since a device may be writing the pinned page).
    /// Shared mappings are shared. The child starts with no subscribers.
    public func fork() throws(MemoryError) -> AddressSpace {
        try checkAlive()
        let child = machine.makeAddressSpace()
        try mmapLock.withExclusive { () throws(MemoryError) in
            // Copies for the pinned pages first (this may reclaim). Pins are
            // taken with the mmap lock held shared, so none appears while
            // we hold it exclusively.
            var copies: [UInt64: Int32] = [:]
            do throws(MemoryError) {
                copies = try copiesOfPinnedPages()
            } catch {
                child.exit()
                throw error
            }
            var mapped: [Int32] = []
            defer {
                for frame in mapped {  // mapped in the child: unlocked once the walk is done, then the allocation's reference put
                    memory.unlock(frame)
                    memory.put(frame)
                }
                for (_, frame) in copies.sorted(by: { $0.key < $1.key }) {  // not used after all: the page went meanwhile (freed in address order, for replays)
                    memory.unlock(frame)
                    memory.put(frame)
                }
            }
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
                        if pte.frame != self.machine.zeroFrame {
                            // A huge page's PMD mapping counts once (its first entry).
                            if !pte.isHuge || self.memory.subpage(of: pte.frame) == 0 { self.memory.addMapping(pte.frame) }
                            child.residentPages.add(1, ordering: .relaxed)
                        }
                    } else if pte.isSwap {
                        self.machine.swap.retain(pte.swapSlot)
                    }
                    // The child has no userfaultfd (without UFFD_FEATURE_EVENT_FORK
                    // Linux clears the write-protect bit in the child's copy).
                    child.ptl.withLock { child.pageTable.set(address >> 12, pte.with(accessed: false).with(uffdWP: false)) }
                }
                if vma.kind == .anonymousPrivate && vma.region?.hasPages.load(ordering: .relaxed) != true {
                    // Never held an anonymous page (at most the zero page):
                    // Linux copies nothing (`vma_needs_copy`), no notifier
                    // hears of it, and the child faults its own.
                } else if vma.kind == .anonymousPrivate {
                    invalidateBlocking(vma.start, vma.end, .writeProtect) { address, pte, _ in
                        if pte.isPresent, memory.pincount(of: pte.frame) > 0, let copy = copies.removeValue(forKey: address) {
                            // Copied under the page-table lock while the
                            // parent still maps the pinned page.
                            memory.copyPayload(from: pte.frame, to: copy)
                            memory.addMapping(copy)  // its own reference (see `zeroFill`): ours is put after the unlock
                            child.residentPages.add(1, ordering: .relaxed)
                            let copied = PTE.present(
                                frame: copy, writable: vma.protection.contains(.write), dirty: true, protNone: pte.isProtNone)
                            child.ptl.withLock { child.pageTable.set(address >> 12, copied) }
                            mapped.append(copy)
                            return
                        }
                        // A device-exclusive entry goes back to normal first
                        // (Linux: copy_nonpresent_pte's try_restore_exclusive_pte);
                        // this invalidation tells its holder.
                        if pte.isDeviceExclusive {
                            pte = pte.with(deviceExclusive: false).with(dirty: true)
                            exclusiveHolders.removeValue(forKey: address >> 12)
                        }
                        if pte.isPresent { pte = pte.with(writable: false) }
                        if pte.isMigration { pte = .migration(frame: pte.frame, writable: false, uffdWP: pte.isUffdWP) }
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

    /// A fresh frame for each pinned private anonymous page (mmap lock
    /// held exclusively), locked and on the LRU, by address: fork's copies.
    private func copiesOfPinnedPages() throws(MemoryError) -> [UInt64: Int32] {
        var pinned: [(UInt64, VMA)] = []
        for vma in vmas where vma.kind == .anonymousPrivate {
            ptl.withLock {
                pageTable.forEachEntry(from: vma.start >> 12, to: vma.end >> 12) { vpn, pte in
                    if pte.isPresent, memory.pincount(of: pte.frame) > 0 { pinned.append((vpn << 12, vma)) }
                }
            }
        }
        var copies: [UInt64: Int32] = [:]
        do {
            for (address, vma) in pinned {
                let frame = try allocateFrame(flags: .anonymous)
                vma.own(frame, at: address, memory: memory)
                let locked = memory.tryLock(frame)
                precondition(locked, "a fresh frame is unlocked")
                memory.node(of: frame).addToLRU(frame, memory: memory)
                copies[address] = frame
            }
        } catch {
            for (_, frame) in copies.sorted(by: { $0.key < $1.key }) {
                memory.unlock(frame)
                memory.put(frame)
            }
            throw error
        }
        return copies
    }

    /// Tears the address space down (Linux: `exit_mmap`): first the
    /// notifier release (every secondary lets go before the mm goes:
    /// Andrea Arcangeli, linux-kernel, 2008-01-30, "Re: [patch 2/6]
    /// mmu_notifier: Callbacks to invalidate address ranges"), then every
    /// mapping is zapped as `unmap_vmas` does, with the UNMAP-type
    /// `munmap` event, which reaches the interval subscriptions (the
    /// whole-space ones were unhooked by the release), freeing in gather
    /// batches; every frame and swap slot is returned. Idempotent.
    public func exit() {
        guard stateWord.exchange(State.exited.rawValue, ordering: .acquiringAndReleasing) != State.exited.rawValue else { return }
        notifiers.release()
        mmapLock.withExclusive {
            for vma in vmas {
                invalidateBlocking(vma.start, vma.end, .munmap, flush: .gathered) { _, pte, released in zap(&pte, &released) }
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
                // Linux's `clear_soft_dirty` leaves a pinned page of a
                // copy-on-write mapping alone: write-protecting it would
                // make the next write copy it away from the device's pin.
                let skipPinned = vma.kind == .anonymousPrivate
                invalidateBlocking(vma.start, vma.end, .softDirty) { _, pte, _ in
                    guard pte.isPresent, !(skipPinned && memory.pincount(of: pte.frame) > 0) else { return }
                    pte = pte.with(softDirty: false).with(writable: false)
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
