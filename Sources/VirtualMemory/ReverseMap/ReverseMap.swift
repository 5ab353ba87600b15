import LabSync

extension Machine {
    /// Visits every address space that may map `frame`, with the address at
    /// which it would, holding the frame's rmap owner lock shared (Linux:
    /// `rmap_walk`). The caller holds the frame's lock, which keeps its
    /// owner and index stable; `body` must check the PTE itself. Frames
    /// without an owner (KSM pages, device page tables) have no mappings here.
    ///
    /// `body` gets the space borrowed, with no reference counted for it:
    /// the walk visits only VMAs on the owner's list, under the owner's
    /// lock, and a VMA leaves the list (`AddressSpace.unlink`, with that
    /// lock exclusive) before its space can leave the machine's registry
    /// (`AddressSpace.exit` unlinks every VMA, then `Machine.forget`), so
    /// the registry's strong reference holds the space for the whole of
    /// `body`. The list is read in place, under the same lock, and not
    /// copied (a copy retains the array and every VMA in it).
    func forEachMapping(of frame: Int32, _ body: (AddressSpace, UInt64) -> Void) {
        let (owner, index) = memory.owner(of: frame)
        guard owner != 0 else { return }
        if let region = owners.region(owner) {
            region.lock.withShared { region.vmas.withUnsafeBufferPointer { Self.visit($0, index, body) } }
        } else if let file = owners.file(owner) {
            file.mappingLock.withShared { file.vmas.withUnsafeBufferPointer { Self.visit($0, index, body) } }
        }
    }

    /// `forEachMapping`'s loop over an owner's VMAs (its lock held).
    @inline(__always)
    private static func visit(_ vmas: UnsafeBufferPointer<VMA>, _ index: UInt32, _ body: (AddressSpace, UInt64) -> Void) {
        for position in vmas.indices {
            guard let address = vmas[position].address(ofIndex: index) else { continue }
            vmas[position].unretainedSpace._withUnsafeGuaranteedRef { body($0, address) }
        }
    }

    /// The page-cache frame of `file` page `index`, read in from the file if
    /// absent, with a reference for the caller.
    func pageCacheFrame(
        _ file: BackingFile, _ index: UInt32, allocate: (FrameFlags) throws(MemoryError) -> Int32
    ) throws(MemoryError) -> Int32 {
        for _ in 0..<16 {
            if let cached = file.cacheLock.withLock({ () -> Int32? in
                guard let frame = file.pageCache[index], memory.tryGet(frame) else { return nil }
                return frame
            }) {
                return cached
            }
            let fresh = try allocate([])
            memory.setOwner(fresh, owner: file.id, index: index)
            let inserted = file.cacheLock.withLock { () -> Bool in
                guard file.pageCache[index] == nil else { return false }
                memory.payload(of: fresh).copyMemory(from: UnsafeRawBufferPointer(file.storedPage(index)))
                file.pageCache[index] = fresh
                file.reads += 1
                memory.get(fresh)  // the page cache's reference; the allocation's goes to the caller
                return true
            }
            if inserted {
                memory.node(of: fresh).addToLRU(fresh, memory: memory)
                statistics.fileReads.add(1, ordering: .relaxed)
                return fresh
            }
            memory.put(fresh)
        }
        preconditionFailure("page cache lookup of \(file.name) page \(index) kept racing")
    }

    /// Removes a page-cache frame if only the expected holders reference it
    /// (checked under the cache lock, which lookups take their references
    /// under): Linux's `folio_ref_freeze` in `__remove_mapping`.
    func removeFromPageCacheIfUnused(_ frame: Int32, expectedReferences: Int) -> Bool {
        let (owner, index) = memory.owner(of: frame)
        guard let file = owners.file(owner) else { return false }
        return file.cacheLock.withLock {
            guard file.pageCache[index] == frame, memory.refcount(of: frame) == expectedReferences,
                memory.mapcount(of: frame) == 0
            else { return false }
            if memory.flags(of: frame).contains(.dirty) {
                file.storedPage(index).copyMemory(from: UnsafeRawBufferPointer(memory.payload(of: frame)))
                file.writebacks += 1
                memory.clearFlags(.dirty, on: frame)
                statistics.writebacks.add(1, ordering: .relaxed)
            }
            file.pageCache.removeValue(forKey: index)
            return true
        }
    }
}

extension Machine {
    /// Drops a swap-cache frame that no PTE maps and no swap PTE refers to
    /// (Linux: `try_to_free_swap`). `holding`: the caller holds one extra
    /// reference, which this consumes. Skipped if the frame is locked:
    /// reclaim or a swap-in owns it and will finish the job.
    func dropSwapCacheIfUnused(_ frame: Int32, holding: Bool) {
        defer { if holding { memory.put(frame) } }
        guard memory.tryLock(frame) else { return }
        let unused = memory.mapcount(of: frame) == 0 && swap.swapReferences(of: frame) == 0
        let expected = 1 + (holding ? 1 : 0)
        if unused, swap.removeFromCacheIfUnused(frame, expectedReferences: expected, expectedMappings: 0, memory: memory) {
            memory.clearFlags(.swapCache, on: frame)
            memory.unlock(frame)
            memory.put(frame)  // the swap cache's reference
            return
        }
        memory.unlock(frame)
    }
}
