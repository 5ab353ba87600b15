import LabSync
import MMUNotifier
import Synchronization

// Moving pages between system memory and device-private memory (Linux:
// migrate_vma_setup / migrate_vma_pages / migrate_vma_finalize, and
// migrate_device_range for eviction). Each move is one invalidation with
// the `migrate` event; the copy happens under the page-table lock while
// the old page is still mapped, so no access can slip between copy and
// switch, and the old page is freed only after the range end.

extension Machine {
    /// Moves the pages of `[start, start + length)` to `device`, as many as
    /// it has room for. Only exclusive, unpinned private anonymous pages
    /// that are present move (Linux: pages migrate_vma can isolate); others
    /// stay where they are. The invalidation carries `device.owner`, so the
    /// device that asked can skip its own (Linux: `MMU_NOTIFY_MIGRATE` with
    /// the range's owner, set by `migrate_vma_collect`; Ralph Campbell,
    /// linux-mm, 2020-07-06, "[PATCH 3/5] mm/notifier: add migration
    /// invalidation type"). Returns how many pages moved.
    public func migrateToDevice(_ space: AddressSpace, start: UInt64, length: UInt64, into device: DeviceMemory) throws(MemoryError) -> Int {
        try space.checkRange(start, length)
        return try space.withMmapShared { () throws(MemoryError) -> Int in
            try space.checkAlive()
            return space.sendToDevice(start, start + length, device)
        }
    }

    /// Brings the device-private pages of `[start, start + length)` home to
    /// system memory (all devices' if `device` is nil). With
    /// `announcingOwner`, the invalidation carries `device`'s owner, as
    /// Linux's `migrate_to_ram` migrates with the device's pgmap owner:
    /// the owning device skips it, having dropped its own translations
    /// first. Returns how many moved.
    public func migrateToHost(
        _ space: AddressSpace, start: UInt64, length: UInt64, from device: DeviceMemory? = nil, announcingOwner: Bool = false
    ) throws(MemoryError) -> Int {
        try space.checkRange(start, length)
        return try space.withMmapShared { () throws(MemoryError) -> Int in
            try space.checkAlive()
            return try space.bringHome(start, start + length, from: device, owner: announcingOwner ? device?.owner : nil)
        }
    }

    /// Brings up to `pages` of `device`'s pages home, those allocated
    /// longest ago first, found through the device memory's reverse map
    /// (Linux: `migrate_device_range` when a driver evicts VRAM). Returns
    /// how many moved.
    public func evictDeviceMemory(_ device: DeviceMemory, pages: Int) -> Int {
        var evicted = 0
        for (_, spaceID, address) in device.oldestMapped(pages) {
            guard let space = addressSpace(spaceID) else { continue }
            let moved = try? space.withMmapShared { () throws(MemoryError) -> Int in
                try space.checkAlive()
                return try space.bringHome(address, address + 4096, from: device)
            }
            evicted += moved ?? 0
        }
        device.evicted.add(evicted, ordering: .relaxed)
        return evicted
    }
}

extension AddressSpace {
    /// `Machine.migrateToDevice` with the mmap lock held.
    func sendToDevice(_ start: UInt64, _ end: UInt64, _ device: DeviceMemory) -> Int {
        // Device memory takes small pages: huge ones in the range are split first.
        splitHugePages(start, end, partialOnly: false, zeroUnused: true)
        // Candidates, referenced and locked so reclaim and NUMA migration
        // leave them be while they move.
        var candidates: [(UInt64, Int32)] = []
        for vma in vmas where vma.kind == .anonymousPrivate && vma.end > start && vma.start < end {
            ptl.withLock {
                pageTable.forEachEntry(from: max(start, vma.start) >> 12, to: min(end, vma.end) >> 12) { vpn, pte in
                    // (A device-exclusive page stays: migrate_vma does not collect it.)
                    // (Nor a page write-protected for a userfaultfd monitor.)
                    if pte.isPresent && !pte.isHuge && !pte.isDeviceExclusive && !pte.isUffdWP && memory.tryGet(pte.frame) {
                        candidates.append((vpn << 12, pte.frame))
                    }
                }
            }
        }
        var movable: [UInt64: Int32] = [:]
        for (address, frame) in candidates {
            if memory.tryLock(frame) {
                let flags = memory.flags(of: frame)
                if flags.contains(.anonymous), !flags.contains(.ksm), !flags.contains(.swapCache),
                    memory.pincount(of: frame) == 0, memory.mapcount(of: frame) == 1
                {
                    movable[address] = frame
                    continue
                }
                memory.unlock(frame)
            }
            memory.put(frame)
        }
        defer {
            for (_, frame) in movable.sorted(by: { $0.key < $1.key }) {  // in address order, for replays
                memory.unlock(frame)
                memory.put(frame)
            }
        }
        var pages = device.allocate(movable.count)
        guard !pages.isEmpty else { return 0 }
        var moved = 0
        invalidateBlocking(start, end, .migrate, owner: device.owner) { address, pte, released in
            // A pin taken since the frame was chosen (under this lock, through
            // this PTE) keeps the page where it is.
            guard pte.isPresent, !pte.isDeviceExclusive, let frame = movable[address], pte.frame == frame, memory.pincount(of: frame) == 0,
                let page = pages.popLast()
            else { return }
            device.payload(of: page).copyMemory(from: UnsafeRawBufferPointer(memory.payload(of: frame)))
            device.setMapping(page, space: id, address: address)
            memory.removeMapping(frame)
            released.frames.append(frame)
            residentPages.subtract(1, ordering: .relaxed)
            pte = .devicePrivate(page, writable: pte.isWritable)
            moved += 1
        }
        for page in pages { device.free(page) }  // room the range did not need after all
        device.migratedToDevice.add(moved, ordering: .relaxed)
        return moved
    }

    /// Brings device-private pages of `[start, end)` home (mmap lock held):
    /// `Machine.migrateToHost`, a CPU fault on a device-private entry, and
    /// fork. The invalidation carries `owner` when the owning device asked
    /// for the move (it dropped its own translations first); otherwise
    /// none, and every device, the owner included, must drop its
    /// translations of the device page before it is freed. (In Linux a CPU
    /// fault calls the owner's `migrate_to_ram`, which copies with its own
    /// DMA engine and fixes its own tables; the lab has no such callback
    /// and holds device memory's contents itself, so it tells the owner as
    /// it tells anyone.)
    func bringHome(_ start: UInt64, _ end: UInt64, from device: DeviceMemory?, owner: OwnerCookie? = nil) throws(MemoryError) -> Int {
        var entries: [UInt64: DevicePage] = [:]
        ptl.withLock {
            pageTable.forEachEntry(from: start >> 12, to: (end + 4095) >> 12) { vpn, pte in
                if pte.isDevicePrivate, device.map({ pte.devicePage.memoryID == $0.id }) ?? true {
                    entries[vpn << 12] = pte.devicePage
                }
            }
        }
        guard !entries.isEmpty else { return 0 }
        // Frames first (this may reclaim), locked and on the LRU before
        // they are mapped, as in a zero-fill fault.
        var frames: [UInt64: Int32] = [:]
        do {
            for address in entries.keys.sorted() {  // in address order, for replays
                guard let vma = vma(containing: address) else { continue }
                let frame = try allocateFrame(flags: .anonymous)
                vma.own(frame, at: address, memory: memory)
                let locked = memory.tryLock(frame)
                precondition(locked, "a fresh frame is unlocked")
                memory.node(of: frame).addToLRU(frame, memory: memory)
                frames[address] = frame
            }
        } catch {
            for (_, frame) in frames.sorted(by: { $0.key < $1.key }) {
                memory.unlock(frame)
                memory.put(frame)
            }
            throw error
        }
        var used: Set<UInt64> = []
        invalidateBlocking(start, end, .migrate, owner: owner) { address, pte, released in
            guard pte.isDevicePrivate, let frame = frames[address], pte.devicePage == entries[address] else { return }
            let page = pte.devicePage
            let home = machine.deviceMemory(of: page)!
            memory.payload(of: frame).copyMemory(from: UnsafeRawBufferPointer(home.payload(of: page)))
            home.migratedToHost.add(1, ordering: .relaxed)
            memory.addMapping(frame)  // its own reference (see `zeroFill`): ours is put after the unlock
            pte = .present(frame: frame, writable: pte.isWritable, dirty: true)
            residentPages.add(1, ordering: .relaxed)
            released.devicePages.append(page)
            used.insert(address)
        }
        for (_, frame) in frames.sorted(by: { $0.key < $1.key }) {  // in address order, for replays
            memory.unlock(frame)
            memory.put(frame)  // the allocation's (the last one if it was not used)
        }
        return used.count
    }
}
