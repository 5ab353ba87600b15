import LabSync
import MMUNotifier
import Synchronization

/// One try of a CPU access under the mmap lock: done, or a userfault to
/// wait for outside it.
private enum FaultAttempt<R> {
    case done(R)
    case userfault
}

extension AddressSpace {
    /// Runs `body` on the bytes of the page at `address` as the CPU would
    /// access them, faulting the page in first if needed (zero fill,
    /// copy-on-write, swap-in, file read). The access happens under the
    /// page-table lock, so it lands entirely before or after any concurrent
    /// unmap. `body` must be short and must not sleep.
    ///
    /// A write to a page write-protected for the userfaultfd monitor waits,
    /// with the mmap lock dropped, until the monitor resolves it.
    public func access<R>(
        _ address: UInt64, write: Bool, _ body: (UnsafeMutableRawBufferPointer) -> R
    ) throws(MemoryError) -> R {
        while true {
            let attempt = try mmapLock.withShared { () throws(MemoryError) -> FaultAttempt<R> in
                try checkAlive()
                for _ in 0..<64 {
                    var protected = false
                    let done = ptl.withLock { () -> R? in
                        let vpn = address >> 12
                        let pte = pageTable.entry(vpn)
                        guard pte.isAccessible, !write || pte.isWritable else {
                            protected = write && pte.isAccessible && pte.isUffdWP
                            return nil
                        }
                        var updated = pte.with(accessed: true)
                        if write { updated = updated.with(dirty: true).with(softDirty: true) }
                        if updated != pte { pageTable.set(vpn, updated) }
                        return body(memory.payload(of: pte.frame))
                    }
                    if let done { return .done(done) }
                    if protected, vma(containing: address)?.protection.contains(.write) == true { return .userfault }
                    try handleFault(address, write: write)
                }
                preconditionFailure("page at 0x\(String(address, radix: 16)) still not accessible after 64 faults")
            }
            switch attempt {
            case .done(let result): return result
            case .userfault: try waitForUserfault(address & ~4095)
            }
        }
    }

    /// Reads the first bytes of the page at `address` (up to the payload size).
    public func read(_ address: UInt64) throws(MemoryError) -> [UInt8] {
        try access(address, write: false) { Array($0) }
    }

    /// Writes `bytes` at the start of the page at `address`.
    public func write(_ address: UInt64, _ bytes: [UInt8]) throws(MemoryError) {
        try access(address, write: true) { page in
            precondition(bytes.count <= page.count, "writing \(bytes.count) bytes into a \(page.count)-byte payload")
            bytes.withUnsafeBytes { page.baseAddress!.copyMemory(from: $0.baseAddress!, byteCount: bytes.count) }
        }
    }

    /// Faults in every page of `[start, start + length)` (Linux:
    /// `MADV_POPULATE_WRITE`, or `MADV_POPULATE_READ` when `write` is
    /// false). For a write, runs of empty private anonymous pages are
    /// zero-filled in batches (one lock hold each for allocation, the LRU
    /// and the page table, as Linux's fault-around batches work); anything
    /// else goes through the ordinary fault path (a read of untouched
    /// private memory maps the zero page).
    public func populate(start: UInt64, length: UInt64, write: Bool) throws(MemoryError) {
        try checkRange(start, length)
        try mmapLock.withShared { () throws(MemoryError) in
            try checkAlive()
            let end = start + length
            var address = start
            while address < end {
                // A read populate of untouched private memory maps the zero
                // page (MADV_POPULATE_READ), through the ordinary fault.
                if write, let vma = vma(containing: address), vma.kind == .anonymousPrivate, vma.protection.contains(.write) {
                    if address % Self.hugeSize == 0, address + Self.hugeSize <= end, hugeFault(vma, address) {
                        address += Self.hugeSize
                        continue
                    }
                    let leafEnd = (address | (512 * 4096 - 1)) + 1
                    let done = zeroFillRun(vma, from: address, to: min(end, vma.end, leafEnd), write: write)
                    if done > 0 {
                        address += UInt64(done) * 4096
                        continue
                    }
                }
                let pte = translateLocked(address)
                if !(pte.isPresent && (!write || pte.isWritable)) {
                    try handleFault(address, write: write)
                }
                address += 4096
            }
        }
    }

    /// Zero-fills the run of empty PTEs that starts at `start` (up to
    /// `limit`, within one leaf table). Returns how many pages it covered;
    /// 0 when the first page is not empty or no frame is free (the caller
    /// then takes the ordinary path, which reclaims).
    private func zeroFillRun(_ vma: VMA, from start: UInt64, to limit: UInt64, write: Bool) -> Int {
        var run = 0
        var stopped = false
        ptl.withLock {
            pageTable.forEachEntry(from: start >> 12, to: limit >> 12, create: true) { _, pte in
                if stopped { return }
                if pte.isNone { run += 1 } else { stopped = true }
            }
        }
        guard run > 0 else { return 0 }
        var frames: [Int32] = []
        frames.reserveCapacity(run)
        // Locked as they come off the free list (Linux: `__folio_set_locked`
        // on a new folio): nobody else holds a reference yet, so the lock
        // bit is set with the allocation's flags instead of an atomic
        // tryLock per frame. Locked and on the LRU before they are mapped,
        // as in `zeroFill`.
        memory.allocate(run, preferring: Int(id.rawValue) % memory.nodes.count, flags: [.anonymous, .locked], into: &frames)
        guard !frames.isEmpty else { return 0 }
        machine.reclaimer?.wakeIfLow()
        let first = start >> 12
        var raced = 0
        let writable = vma.protection.contains(.write)
        frames.withUnsafeBufferPointer { frames in
            for (i, frame) in frames.enumerated() {
                assert(memory.flags(of: frame).contains([.allocated, .locked]), "a fresh frame is allocated and locked")
                vma.own(frame, at: start + UInt64(i) * 4096, memory: memory)
            }
            // The allocator fills from one node, then the next: each node's
            // frames are one run of `frames`, added to its LRU in one go.
            var from = 0
            while from < frames.count {
                let node = memory.node(of: frames[from])
                var to = from + 1
                while to < frames.count, memory.node(of: frames[to]) === node { to += 1 }
                node.addToLRU(UnsafeBufferPointer(rebasing: frames[from..<to]), memory: memory)
                from = to
            }
            ptl.withLock {
                // One leaf table (the run stays within one): its entries in place.
                pageTable.forEachEntry(from: first, to: first + UInt64(frames.count), create: true) { vpn, pte in
                    guard pte.isNone else {
                        raced += 1
                        return
                    }
                    let frame = frames[Int(vpn - first)]
                    memory.addMapping(frame)  // its own reference: see `zeroFill`
                    pte = .present(frame: frame, writable: writable, dirty: write)
                }
            }
            for frame in frames { memory.unlock(frame) }
        }
        memory.put(frames)  // the allocations' references (a raced frame's was its last)
        let installed = frames.count - raced
        residentPages.add(installed, ordering: .relaxed)
        machine.statistics.faults.add(installed, ordering: .relaxed)
        machine.statistics.zeroFills.add(installed, ordering: .relaxed)
        return frames.count
    }

    func translateLocked(_ address: UInt64) -> PTE { ptl.withLock { pageTable.entry(address >> 12) } }

    /// Resolves one fault (mmap lock held shared). Returns when the PTE may
    /// allow the access; the caller re-checks under the page-table lock.
    func handleFault(_ address: UInt64, write: Bool) throws(MemoryError) {
        machine.statistics.faults.add(1, ordering: .relaxed)
        guard let vma = vma(containing: address) else { throw .segmentationFault(address) }
        guard vma.protection.contains(write ? .write : .read) else { throw .protectionFault(address) }
        let page = address & ~4095
        let pte = translateLocked(page)
        // Write-protected for the userfaultfd monitor: a device's fault (or
        // any fault that cannot wait for the monitor) fails (Linux:
        // handle_userfault without FAULT_FLAG_ALLOW_RETRY, -EFAULT); the
        // CPU's `access` waits before it gets here.
        if write && pte.isUffdWP && pte.isPresent { throw .protectionFault(address) }
        if pte.isDeviceExclusive {
            // A device holds the page for its atomics: the CPU takes it back.
            giveBackExclusive(page, pte)
            return
        }
        if pte.isPresent {
            if write && !pte.isWritable { try writeProtectedFault(vma, page, pte) }
            return
        }
        if pte.isMigration {
            // Wait for the migration (or a huge page's split) to finish: it
            // holds the old frame's lock (a huge folio's: its head's).
            // Without a reference the frame may already be freed (the
            // migration is over) and must not be touched. The head is
            // found once: a split may make a tail a page of its own
            // meanwhile, and the reference must be put where it was taken.
            let head = memory.head(of: pte.frame)
            guard memory.tryGet(head) else { return }
            memory.lock(head)
            memory.unlock(head)
            memory.put(head)
            return
        }
        if pte.isSwap { return try swapIn(vma, page, pte, write: write) }
        if pte.isDevicePrivate {
            // Linux: do_swap_page -> pgmap->ops->migrate_to_ram: the owner
            // moves the page home itself (its owner in the invalidation),
            // with this thread's mmap lock held shared (services it calls do
            // not take it again: `withMmapShared`). What it left in device
            // memory comes home without an owner.
            if let home = machine.deviceMemory(of: pte.devicePage), let migrateToRAM = home.migrateToRAM {
                Self.$mmapReadHeld.withValue(ObjectIdentifier(self)) { migrateToRAM(self, page) }
                if !translateLocked(page).isDevicePrivate { return }
            }
            _ = try bringHome(page, page + 4096, from: nil)
            return
        }
        if vma.kind == .anonymousPrivate { return try zeroFill(vma, page, write: write) }
        try fileFault(vma, page, write: write)
    }

    // MARK: - Allocation with reclaim

    /// A frame for this address space, reclaiming (and, failing that,
    /// invoking the OOM killer) when none is free.
    ///
    /// Like Linux's allocator slow path, it declares OOM only after several
    /// rounds of reclaim made no progress and no frame appeared meanwhile
    /// (the background reclaimer or a concurrent free may have helped).
    func allocateFrame(flags: FrameFlags) throws(MemoryError) -> Int32 {
        machine.sync.mightReclaim()  // lock order: whatever is held here comes before reclaim
        var fruitless = 0
        for _ in 0..<64 {
            if let frame = memory.allocate(preferring: Int(id.rawValue) % memory.nodes.count, flags: flags) {
                machine.reclaimer?.wakeIfLow()
                return frame
            }
            try checkAlive()
            machine.statistics.directReclaims.add(1, ordering: .relaxed)
            if machine.reclaimDirectly() > 0 {
                fruitless = 0
                continue
            }
            fruitless += 1
            if fruitless >= 4 {
                machine.outOfMemory(requester: self)
                try checkAlive()
                fruitless = 0
            } else {
                machine.sync.sleep(for: .microseconds(100))
            }
        }
        throw .outOfMemory
    }

    // MARK: - Fault kinds

    /// A fault on untouched private anonymous memory (Linux:
    /// `do_anonymous_page`): a read maps the shared zero page read-only
    /// (no frame, no reference, not resident); a write, a fresh zeroed
    /// frame. The first write to a zero-page mapping then replaces it with
    /// a copy under a `cowBreak` (CLEAR-type) invalidation (`wp_page_copy`).
    private func zeroFill(_ vma: VMA, _ page: UInt64, write: Bool) throws(MemoryError) {
        if !write {
            let zero = machine.zeroFrame
            let mapped = ptl.withLock { () -> Bool in
                guard pageTable.entry(page >> 12).isNone else { return false }
                pageTable.set(page >> 12, .present(frame: zero, writable: false))
                return true
            }
            if mapped { machine.statistics.zeroPageMaps.add(1, ordering: .relaxed) }
            return
        }
        // Where a huge page may be, one is tried first (falling back to a
        // small page when the 2 MiB is not empty or no folio can be had).
        if hugeFault(vma, page) { return }
        let frame = try allocateFrame(flags: .anonymous)
        vma.own(frame, at: page, memory: memory)
        // On the LRU while we still own it, locked so reclaim leaves it be.
        // Once the PTE is set, an unmap (or a copy-on-write of the page)
        // may drop the mapping at any moment: the mapping takes a
        // reference of its own, and the allocation's, which keeps the
        // frame alive while it is locked, is put only after the unlock (a
        // frame freed while locked would have its next owner unlocked by
        // us: a uffd-snapshot campaign found that in copy-on-write).
        let locked = memory.tryLock(frame)
        precondition(locked, "a fresh frame is unlocked")
        memory.node(of: frame).addToLRU(frame, memory: memory)
        let installed = ptl.withLock { () -> Bool in
            guard pageTable.entry(page >> 12).isNone else { return false }
            memory.addMapping(frame)
            pageTable.set(page >> 12, .present(frame: frame, writable: vma.protection.contains(.write), dirty: write))
            residentPages.add(1, ordering: .relaxed)
            return true
        }
        memory.unlock(frame)
        memory.put(frame)  // the allocation's (the last one if it was not installed)
        if installed { machine.statistics.zeroFills.add(1, ordering: .relaxed) }
    }

    private func fileFault(_ vma: VMA, _ page: UInt64, write: Bool) throws(MemoryError) {
        let file = vma.file!
        let index = vma.index(of: page)
        let frame = try machine.pageCacheFrame(file, index, allocate: allocateFrame)
        defer { memory.put(frame) }  // the lookup's reference
        let writable = write && vma.protection.contains(.write)
        let installed = ptl.withLock { () -> Bool in
            guard pageTable.entry(page >> 12).isNone else { return false }
            memory.addMapping(frame)
            pageTable.set(page >> 12, .present(frame: frame, writable: writable, dirty: writable))
            residentPages.add(1, ordering: .relaxed)
            return true
        }
        if installed && writable { memory.setFlags(.dirty, on: frame) }
    }

    /// Brings a swapped-out page back (Linux: `do_swap_page`).
    ///
    /// Every decision is taken under the page-table lock while the PTE
    /// still names `slot`: the PTE was read before `allocateFrame`, which
    /// may reclaim, and meanwhile the page may have been swapped in by
    /// someone else, written, and swapped out again, or unmapped, with the
    /// slot number given to another address space's page. Reading a slot
    /// only our PTE still refers to, and mapping a cached frame only while
    /// it is still that slot's, is what keeps another's data out (a helper
    /// found both windows: a frame mapped after its slot had been reused).
    ///
    /// A read fault maps a page only this PTE refers to writable and clean
    /// (Linux's `do_swap_page` for an exclusive page): it stays in the swap
    /// cache with its slot, so reclaim may drop it again without a write
    /// unless someone marks it dirty. A CPU write sets the PTE's dirty bit;
    /// a device that writes through such a translation must report the
    /// page dirty itself, or its write is lost (mlx5 marks every writable
    /// mapping dirty on unmap for this reason).
    private func swapIn(_ vma: VMA, _ page: UInt64, _ pte: PTE, write: Bool) throws(MemoryError) {
        let slot = pte.swapSlot
        let swap = machine.swap
        let writableIfExclusive = !write && vma.protection.contains(.write)
        if let cached = swap.cachedFrame(slot, memory: memory) {
            defer { memory.put(cached) }  // the lookup's reference
            ptl.withLock {
                guard pageTable.entry(page >> 12) == pte, swap.slot(of: cached) == slot else { return }
                mapSwapped(cached, at: page, releasing: slot, writableIfExclusive: writableIfExclusive, uffdWP: pte.isUffdWP)
            }
            return  // mapped, or the PTE or the cache changed: the caller retries
        }
        let fresh = try allocateFrame(flags: [.anonymous, .swapCache])
        vma.own(fresh, at: page, memory: memory)
        let read = ptl.withLock { () -> Bool in
            // `readIntoCache` takes the swap cache's reference as it
            // publishes the frame, under the swap lock: a fault that finds
            // the frame in the cache a moment later cannot mistake our
            // allocation reference for the cache's.
            guard pageTable.entry(page >> 12) == pte, swap.readIntoCache(slot, frame: fresh, memory: memory) else { return false }
            mapSwapped(fresh, at: page, releasing: slot, writableIfExclusive: writableIfExclusive, uffdWP: pte.isUffdWP)
            return true
        }
        guard read else {
            memory.clearFlags(.swapCache, on: fresh)
            memory.put(fresh)
            return  // someone else read it in, or the PTE changed; the caller retries
        }
        // On the LRU whatever happens next: once published, the frame may
        // be unmapped and left in the swap cache by others, and only
        // reclaim finds such a page again.
        memory.node(of: fresh).addToLRU(fresh, memory: memory)
        memory.put(fresh)  // the allocation's reference; the mapping and the cache hold theirs
        machine.statistics.swapIns.add(1, ordering: .relaxed)
    }

    /// Maps a swap-cache frame in place of its swap entry (PTL held),
    /// clean. With `writableIfExclusive`, writable if this PTE is the only
    /// user of the page and its slot; otherwise read-only until written: a
    /// write fault then decides between reusing this page (dropping the
    /// stale slot) and copying it.
    /// A page write-protected for a userfaultfd monitor (`uffdWP`) comes
    /// back read-only and still protected.
    private func mapSwapped(_ frame: Int32, at page: UInt64, releasing slot: Int, writableIfExclusive: Bool, uffdWP: Bool) {
        ptl.assertHeld()
        let exclusive = writableIfExclusive && !uffdWP && !memory.flags(of: frame).contains(.ksm) && memory.mapcount(of: frame) == 0
            && machine.swap.swapReferences(of: frame) == 1
        memory.addMapping(frame)
        pageTable.set(page >> 12, PTE.present(frame: frame, writable: exclusive).with(uffdWP: uffdWP))
        residentPages.add(1, ordering: .relaxed)
        machine.swap.release(slot)  // the cache still links the slot, so it stays allocated
    }

    /// A write to a present, write-protected page: make a shared mapping
    /// writable (and its page dirty), reuse an exclusive anonymous page, or
    /// break copy-on-write (or KSM sharing) with a fresh copy.
    private func writeProtectedFault(_ vma: VMA, _ page: UInt64, _ pte: PTE) throws(MemoryError) {
        if pte.isHuge {
            // A huge page mapped read-only (after fork, mprotect): reused
            // whole if this mapping is its only one (Linux:
            // do_huge_pmd_wp_page), else split first and copied page by
            // page (Linux splits only the faulting PMD; the model splits
            // the folio, so its other mappings hear a hugeSplit too).
            if !reuseHugeIfExclusive(page, pte) { splitHugePage(at: page) }
            return
        }
        let old = pte.frame
        if vma.kind != .anonymousPrivate {
            ptl.withLock {
                guard pageTable.entry(page >> 12) == pte else { return }
                pageTable.set(page >> 12, pte.with(writable: true).with(dirty: true).with(softDirty: true).with(accessed: true))
            }
            memory.setFlags(.dirty, on: old)
            return
        }
        if try reuseIfExclusive(page, pte) { return }
        let copy = try allocateFrame(flags: .anonymous)
        vma.own(copy, at: page, memory: memory)
        let locked = memory.tryLock(copy)
        precondition(locked, "a fresh frame is unlocked")
        memory.node(of: copy).addToLRU(copy, memory: memory)
        var replaced = false
        let wasKSM = memory.flags(of: old).contains(.ksm)
        let fromZeroPage = old == machine.zeroFrame
        invalidateBlocking(page, page + 4096, .cowBreak) { _, current, released in
            guard current == pte else { return }
            // Copied under the page-table lock, while the PTE still maps
            // `old`: the frame is alive and nobody can write it.
            memory.copyPayload(from: old, to: copy)
            if !fromZeroPage {
                memory.removeMapping(old)
                released.frames.append(old)
            }
            // Its own reference: the end callbacks still run with `copy`
            // locked, and meanwhile the page may be unmapped, or made
            // read-only (a userfaultfd write-protect) and copied again,
            // dropping the mapping's (see `zeroFill`).
            memory.addMapping(copy)
            current = .present(frame: copy, writable: true, dirty: true)
            replaced = true
        }
        memory.unlock(copy)
        memory.put(copy)  // the allocation's (the last one if it was not used)
        if replaced && fromZeroPage { residentPages.add(1, ordering: .relaxed) }
        if replaced {
            machine.statistics.cowCopies.add(1, ordering: .relaxed)
            if wasKSM { machine.statistics.ksmBreaks.add(1, ordering: .relaxed) }
        }
    }

    /// Makes the huge page at `page` writable in place, all 512 entries, if
    /// this mapping is its only one and it is an ordinary anonymous folio.
    private func reuseHugeIfExclusive(_ page: UInt64, _ pte: PTE) -> Bool {
        let head = memory.head(of: pte.frame)
        let flags = memory.flags(of: head)
        guard flags.contains(.anonymous), !flags.contains(.swapCache), memory.mapcount(of: head) == 1 else { return false }
        let block = page & ~(Self.hugeSize - 1)
        let reused = ptl.withLock { () -> Bool in
            guard pageTable.entry(page >> 12) == pte, memory.mapcount(of: head) == 1 else { return false }
            pageTable.forEachEntry(from: block >> 12, to: (block + Self.hugeSize) >> 12) { _, entry in
                guard entry.isPresent, entry.isHuge, memory.head(of: entry.frame) == head else { return }
                entry = entry.with(writable: true).with(dirty: true).with(softDirty: true)
            }
            return true
        }
        if reused { machine.statistics.cowReuses.add(1, ordering: .relaxed) }
        return reused
    }

    /// Makes an anonymous page writable in place when this PTE is its only
    /// user (Linux: `wp_page_reuse`). A swap-cached page leaves the swap
    /// cache first: once written, its slot no longer matches.
    ///
    /// The fault holds its own reference on the frame while it has the
    /// frame locked, and checks the PTE still maps it once locked: a
    /// concurrent write fault on the same page that cannot take the lock
    /// copies the page and drops the mapping's reference, and without ours
    /// the frame would be freed (and its lock cleared) under us. (The RDMA
    /// storm found this.)
    private func reuseIfExclusive(_ page: UInt64, _ pte: PTE) throws(MemoryError) -> Bool {
        let frame = pte.frame
        let flags = memory.flags(of: frame)
        // A pinned page is reused as any exclusive page is (Linux: a pinned
        // anonymous page is always PageAnonExclusive), so the device's pin
        // and the CPU keep sharing it.
        guard !flags.contains(.ksm), frame != machine.zeroFrame, memory.mapcount(of: frame) == 1 else { return false }
        if memory.pincount(of: frame) > 0 {
            // A pinned anonymous page is PageAnonExclusive in Linux: reused
            // whatever else holds it (reclaim or compaction may have it
            // locked, isolated or referenced this moment; copying it then
            // would leave the pin on a frame the primary no longer maps).
            // It may stay in the swap cache: its PTE is dirty, so the next
            // eviction writes the slot again. Fork never shares a pinned
            // page, nor does KSM merge one.
            let reused = ptl.withLock { () -> Bool in
                guard pageTable.entry(page >> 12) == pte, memory.pincount(of: frame) > 0, memory.mapcount(of: frame) == 1 else { return false }
                pageTable.set(page >> 12, pte.with(writable: true).with(dirty: true).with(softDirty: true).with(accessed: true))
                return true
            }
            if reused {
                machine.statistics.cowReuses.add(1, ordering: .relaxed)
                return true
            }
        }
        guard memory.tryGet(frame) else { return false }
        defer { memory.put(frame) }  // runs last: after the unlock below
        guard memory.tryLock(frame) else { return false }
        defer { memory.unlock(frame) }
        guard ptl.withLock({ pageTable.entry(page >> 12) == pte }) else { return false }  // still ours, now that it is locked
        let inSwapCache = memory.flags(of: frame).contains(.swapCache)
        // References: the mapping's, ours, the swap cache's if cached, and
        // one per pin.
        let pins = memory.pincount(of: frame)
        guard memory.refcount(of: frame) == 2 + (inSwapCache ? 1 : 0) + pins, memory.mapcount(of: frame) == 1 else { return false }
        if inSwapCache {
            guard machine.swap.removeFromCacheIfUnused(frame, expectedReferences: 3 + pins, expectedMappings: 1, memory: memory) else {
                return false
            }
            memory.clearFlags(.swapCache, on: frame)
            memory.put(frame)  // the swap cache's reference
        }
        let reused = ptl.withLock { () -> Bool in
            guard pageTable.entry(page >> 12) == pte else { return false }
            pageTable.set(page >> 12, pte.with(writable: true).with(dirty: true).with(softDirty: true).with(accessed: true))
            return true
        }
        if reused { machine.statistics.cowReuses.add(1, ordering: .relaxed) }
        return reused
    }
}
