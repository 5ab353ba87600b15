import LabSync
public import MMUNotifier

/// The outcome of a page migration request.
public enum MigrationResult: Sendable, Hashable, CustomStringConvertible {
    case migrated(from: PageFrameNumber, to: PageFrameNumber)
    /// Nothing is mapped at the address.
    case notMapped
    /// The frame is pinned (Linux: long-term pins make pages unmovable).
    case pinned(PageFrameNumber)
    /// Someone else holds the frame's lock (reclaim, another migration).
    case busy
    /// No free frame on the target node.
    case noMemory
    /// KSM and device page-table frames are not movable here.
    case unsupported

    public var description: String {
        switch self {
        case .migrated(let from, let to): "migrated \(from) -> \(to)"
        case .notMapped: "not mapped"
        case .pinned(let frame): "\(frame) is pinned and cannot move"
        case .busy: "busy"
        case .noMemory: "no memory on the target node"
        case .unsupported: "unsupported frame"
        }
    }
}

/// Why a page migrates (Linux: `enum migrate_reason`), which decides where
/// it may go and how a pinned page is treated.
public enum MigrationReason: Sendable, Hashable {
    /// NUMA placement, `move_pages`, memory tiering: a pinned page is
    /// found out only after the secondaries were told (`try_to_migrate_one`
    /// cannot unshare it), so they see the invalidation.
    case placement
    /// Compaction: a page with references beyond its mappings (a pin) is
    /// never isolated, so nobody is told (`isolate_migratepages_block`'s
    /// reference check). A long-term-pinned page is never a candidate.
    case compaction
    /// A long-term pin (FOLL_LONGTERM) moving the page out of a movable
    /// zone first (`migrate_longterm_unpinnable_folios`): the target comes
    /// from a normal zone.
    case longTermPin
}

extension Machine {
    /// Moves the page mapped at `address` to a frame on `node` (Linux:
    /// `migrate_pages` for compaction, NUMA balancing or a long-term pin).
    /// Every mapping is replaced by a migration entry under a `migrate`
    /// invalidation carrying `owner` (so a device that asked for the
    /// migration can skip its own); CPU faults on a migration entry wait;
    /// the payload is copied; the mappings are restored on the new frame.
    /// A pinned frame cannot move (see `MigrationReason` for who is told).
    public func migrate(
        _ space: AddressSpace, address: UInt64, to node: Int, owner: OwnerCookie? = nil, reason: MigrationReason = .placement
    ) -> MigrationResult {
        let page = address & ~4095
        // A huge page's head, found under the page-table lock while its
        // PMD mapping is present (no split can be under way then).
        guard let frame = space.ptl.withLock({ () -> Int32? in
            let pte = space.pageTable.entry(page >> 12)
            guard pte.isPresent else { return nil }
            let frame = memory.head(of: pte.frame)
            return memory.tryGet(frame) ? frame : nil
        }) else { return .notMapped }
        defer { memory.put(frame) }
        guard memory.tryLock(frame) else { return .busy }
        defer { memory.unlock(frame) }
        let flags = memory.flags(of: frame)
        if flags.contains(.huge) {
            if reason == .compaction && memory.pincount(of: frame) > 0 { return .pinned(PageFrameNumber(frame)) }
            return migrateHugeFolio(frame, to: node, owner: owner, reason: reason)
        }
        guard !flags.contains(.ksm), !flags.contains(.devicePageTable), !flags.contains(.zeroPage), flags.contains(.allocated) else {
            return .unsupported
        }
        if memory.pincount(of: frame) > 0 && reason == .compaction {
            statistics.compactionSkippedPinned.add(1, ordering: .relaxed)
            return .pinned(PageFrameNumber(frame))
        }
        if memory.pincount(of: frame) > 0 {
            // Linux tries, and fails only after telling the secondaries:
            // `try_to_migrate_one` cannot unshare a pinned anonymous page
            // (and a pinned file page fails the reference check), so the
            // mapping is restored. The secondaries still saw the range.
            forEachMapping(of: frame) { space, mapped in
                space.invalidateBlocking(mapped, mapped + 4096, .migrate, owner: owner) { _, _, _ in }
            }
            statistics.migrationsRefusedPinned.add(1, ordering: .relaxed)
            return .pinned(PageFrameNumber(frame))
        }
        // A lazily freed page stays lazily freed on its new frame (Linux keeps
        // the folio not swap-backed).
        guard let target = memory.allocate(preferring: node, flags: flags.intersection([.anonymous, .lazyFree]), movable: reason != .longTermPin)
        else { return .noMemory }
        // The new frame stays locked until it is on the LRU: mapped but
        // unlocked and off the LRU, reclaim could not tell it from its own.
        let targetLocked = memory.tryLock(target)
        precondition(targetLocked, "a fresh frame is unlocked")

        // A pin is taken under the page-table lock through a present PTE,
        // so one taken after the check above shows here, under the same
        // lock as the PTE it came through: the migration then stops, and
        // every mapping already turned into a migration entry goes back to
        // the old frame (Linux: `folio_ref_freeze` failing on the extra
        // reference, and `remove_migration_ptes(folio, folio)`). Without
        // this, a device pinning the page meanwhile would keep the old
        // frame while the primary maps a copy.
        var pinnedMeanwhile = false
        forEachMapping(of: frame) { space, mapped in
            space.invalidateBlocking(mapped, mapped + 4096, .migrate, owner: owner) { _, pte, released in
                guard pte.isPresent, pte.frame == frame, !pinnedMeanwhile else { return }
                if memory.pincount(of: frame) > 0 {
                    pinnedMeanwhile = true
                    return
                }
                if pte.isDirty { memory.setFlags(.dirty, on: frame) }
                memory.removeMapping(frame)
                released.frames.append(frame)
                space.residentPages.subtract(1, ordering: .relaxed)
                pte = .migration(frame: frame, writable: pte.isWritable, protNone: pte.isProtNone, uffdWP: pte.isUffdWP)
            }
        }
        if pinnedMeanwhile {
            restoreMigrationEntries(of: frame, to: frame)
            memory.unlock(target)
            memory.put(target)
            statistics.migrationsRefusedPinned.add(1, ordering: .relaxed)
            return .pinned(PageFrameNumber(frame))
        }
        memory.copyPayload(from: frame, to: target)
        let (ownerID, index) = memory.owner(of: frame)
        memory.setOwner(target, owner: ownerID, index: index)
        if memory.testAndClear(.dirty, on: frame) { memory.setFlags(.dirty, on: target) }
        if flags.contains(.swapCache), swap.replaceInCache(frame, with: target) {
            memory.setFlags(.swapCache, on: target)
            memory.clearFlags(.swapCache, on: frame)
            memory.get(target)
            memory.put(frame)
        }
        if let file = owners.file(ownerID) {
            let moved = file.cacheLock.withLock { () -> Bool in
                guard file.pageCache[index] == frame else { return false }
                file.pageCache[index] = target
                return true
            }
            if moved {
                memory.get(target)
                memory.put(frame)
            }
        }
        restoreMigrationEntries(of: frame, to: target)
        memory.node(of: target).addToLRU(target, memory: memory)
        memory.unlock(target)
        memory.put(target)  // the allocation's reference; mappings and caches hold theirs
        statistics.migrations.add(1, ordering: .relaxed)
        if reason == .compaction { statistics.compactions.add(1, ordering: .relaxed) }
        return .migrated(from: PageFrameNumber(frame), to: PageFrameNumber(target))
    }

    /// Turns every migration entry of `frame` back into a present PTE of
    /// `target` (the new frame, or `frame` itself when the migration was
    /// called off). Through the rmap, not a list kept from the unmap: a VMA
    /// may have gone (munmap, exit) or come (fork copies migration
    /// entries) meanwhile, and the rmap holds exactly the live ones.
    private func restoreMigrationEntries(of frame: Int32, to target: Int32) {
        forEachMapping(of: frame) { space, mapped in
            space.ptl.withLock {
                let pte = space.pageTable.entry(mapped >> 12)
                guard pte.isMigration, pte.frame == frame else { return }
                memory.addMapping(target)
                space.pageTable.set(
                    mapped >> 12,
                    PTE.present(frame: target, writable: pte.isWritable, accessed: false, protNone: pte.migrationIsProtNone).with(uffdWP: pte.isUffdWP))
                space.residentPages.add(1, ordering: .relaxed)
            }
        }
    }
}
