import LabSync
import MMUNotifier

// Transparent huge pages, machine-wide: splitting a folio in every address
// space that maps it, migrating a whole folio, and collapsing 512 small
// pages into one (khugepaged, MADV_COLLAPSE).

/// What a collapse attempt did.
public enum CollapseResult: Sendable, Hashable {
    case collapsed
    /// Not a place for a huge page (not private anonymous memory, not
    /// wholly inside one VMA, THP off for it), or already one.
    case notEligible
    /// A page there cannot be moved into a huge page now: swapped out,
    /// shared, pinned, KSM, in device memory, exclusive to a device,
    /// write-protected for userfaultfd, being migrated.
    case notSuitable
    /// khugepaged only: no page of the 2 MiB was young, for the CPU or
    /// any device asked with `test_young`.
    case cold
    /// No huge folio could be had without reclaim.
    case noMemory
    /// A page was locked by someone else.
    case busy
}

extension Machine {
    /// Splits the huge folio headed by `head` (its lock and a reference
    /// held by the caller; Linux: `split_huge_page`, whose unmap sends a
    /// CLEAR over the folio in each mapping): in every address space that
    /// maps it, under a `hugeSplit` invalidation of its 2 MiB, the PMD
    /// mapping becomes migration entries; the folio becomes 512 small
    /// pages (`splitFolioMetadata`), the tails on the LRU; the entries come
    /// back as 512 small mappings of the same frames. A device that keeps
    /// reading a page through a translation it had keeps reaching the same
    /// frame, but must not use one it acknowledged dropping before the
    /// rewrite is done, as for any CLEAR.
    ///
    /// `zeroUnused`: a page that holds only zeroes comes back as a mapping
    /// of the shared zero page and its frame is freed (Linux since 6.12
    /// does this when it splits an anonymous folio, `split_huge_page` ->
    /// `remap_page` with RMP_USE_SHARED_ZEROPAGE; splitting only the PMD,
    /// for a partial munmap, mprotect or madvise, a pin or copy-on-write,
    /// keeps every frame).
    func splitHugeFolio(_ head: Int32, zeroUnused: Bool = false) {
        precondition(memory.flags(of: head).contains(.huge), "frame \(head) heads no huge folio")
        precondition(memory.pincount(of: head) == 0, "splitting pinned huge folio \(head) (pins split a huge page first)")
        forEachMapping(of: head) { space, block in
            space.invalidateBlocking(block, block + AddressSpace.hugeSize, .hugeSplit) { address, pte, released in
                guard pte.isPresent, pte.isHuge, memory.head(of: pte.frame) == head else { return }
                if pte.isDirty { memory.setFlags(.dirty, on: head) }
                // The PMD mapping's count and reference go with its last entry.
                if (address - block) >> 12 == UInt64(PhysicalMemory.hugePages - 1) {
                    memory.removeMapping(head)
                    released.frames.append(head)
                }
                space.residentPages.subtract(1, ordering: .relaxed)
                pte = .migration(frame: pte.frame, writable: pte.isWritable, protNone: pte.isProtNone, uffdWP: pte.isUffdWP)
            }
        }
        let frames = memory.splitFolioMetadata(head)
        let tails = Array(frames.dropFirst())
        memory.node(of: head).addToLRU(tails, memory: memory)
        // Back as small mappings, through the rmap (the head now owns page
        // 0 of the same index, so it finds the same places).
        forEachMapping(of: head) { space, block in
            space.ptl.withLock {
                for (k, frame) in frames.enumerated() {
                    let vpn = (block >> 12) + UInt64(k)
                    let pte = space.pageTable.entry(vpn)
                    guard pte.isMigration, pte.frame == frame else { continue }
                    if zeroUnused && !pte.isUffdWP && memory.payload(of: frame).allSatisfy({ $0 == 0 }) {
                        space.pageTable.set(vpn, .present(frame: zeroFrame, writable: false, accessed: false, protNone: pte.migrationIsProtNone))
                        continue
                    }
                    memory.addMapping(frame)
                    space.pageTable.set(
                        vpn, PTE.present(frame: frame, writable: pte.isWritable, accessed: false, protNone: pte.migrationIsProtNone)
                            .with(uffdWP: pte.isUffdWP))
                    space.residentPages.add(1, ordering: .relaxed)
                }
            }
        }
        for frame in tails {
            memory.unlock(frame)
            memory.put(frame)  // the split's reference: a page nobody maps now is freed
        }
        statistics.hugeSplits.add(1, ordering: .relaxed)
    }

    /// Moves a whole huge folio (its head locked, a reference held) to a
    /// new one on `node` (Linux: THP migration, `set_pmd_migration_entry`
    /// under a CLEAR over the folio, tagged `migrate` here): every PMD
    /// mapping becomes huge migration entries, the 512 pages are copied,
    /// the mappings come back on the new folio. With no huge folio to be
    /// had on the target, the folio is split instead (Linux splits and
    /// migrates the pages) and the result is `noMemory`.
    func migrateHugeFolio(_ head: Int32, to node: Int, owner: OwnerCookie?, reason: MigrationReason) -> MigrationResult {
        let flags = memory.flags(of: head)
        if memory.pincount(of: head) > 0 { return .pinned(PageFrameNumber(head)) }  // pins split a huge page first
        guard let target = memory.allocateHuge(preferring: node, flags: flags.intersection([.anonymous, .lazyFree]), movable: reason != .longTermPin)
        else {
            splitHugeFolio(head, zeroUnused: true)
            return .noMemory
        }
        let targetLocked = memory.tryLock(target)
        precondition(targetLocked, "a fresh huge folio is unlocked")
        let old = memory.members(of: head)
        let new = memory.members(of: target)
        forEachMapping(of: head) { space, block in
            space.invalidateBlocking(block, block + AddressSpace.hugeSize, .migrate, owner: owner) { address, pte, released in
                guard pte.isPresent, pte.isHuge, memory.head(of: pte.frame) == head else { return }
                if pte.isDirty { memory.setFlags(.dirty, on: head) }
                if (address - block) >> 12 == UInt64(PhysicalMemory.hugePages - 1) {
                    memory.removeMapping(head)
                    released.frames.append(head)
                }
                space.residentPages.subtract(1, ordering: .relaxed)
                pte = PTE.migration(frame: pte.frame, writable: pte.isWritable, protNone: pte.isProtNone, uffdWP: pte.isUffdWP).with(huge: true)
            }
        }
        for (from, to) in zip(old, new) { memory.copyPayload(from: from, to: to) }
        let (ownerID, index) = memory.owner(of: head)
        memory.setOwner(target, owner: ownerID, index: index)
        if memory.testAndClear(.dirty, on: head) { memory.setFlags(.dirty, on: target) }
        // Back on the new folio: a mapping whose 512 entries are all still
        // migration entries of the old one (a mapping cannot lose part of
        // them: that would split the folio, which waits for our lock).
        forEachMapping(of: head) { space, block in
            space.ptl.withLock {
                let first = block >> 12
                for k in 0..<PhysicalMemory.hugePages {
                    let pte = space.pageTable.entry(first + UInt64(k))
                    guard pte.isMigration, pte.frame == old[k] else { return }
                }
                memory.addMapping(target)
                for k in 0..<PhysicalMemory.hugePages {
                    let pte = space.pageTable.entry(first + UInt64(k))
                    space.pageTable.set(
                        first + UInt64(k),
                        PTE.present(frame: new[k], writable: pte.isWritable, accessed: false, protNone: pte.migrationIsProtNone)
                            .with(uffdWP: pte.isUffdWP).with(huge: true))
                }
                space.residentPages.add(PhysicalMemory.hugePages, ordering: .relaxed)
            }
        }
        memory.node(of: target).addToLRU(target, memory: memory)
        memory.unlock(target)
        memory.put(target)  // the allocation's reference; the mappings hold theirs
        statistics.migrations.add(1, ordering: .relaxed)
        statistics.hugeMigrations.add(1, ordering: .relaxed)
        if reason == .compaction { statistics.compactions.add(1, ordering: .relaxed) }
        return .migrated(from: PageFrameNumber(head), to: PageFrameNumber(target))
    }

    /// Whether the CPU or a secondary used any page of the huge folio
    /// headed by `head` since the last look, in any mapping (reclaim's
    /// aging at folio granularity, Linux's `folio_referenced` on a PMD):
    /// the 512 accessed bits of each mapping, then every secondary's
    /// `clearYoung` over its 2 MiB; clears what it reads. Only the blocks
    /// some PTE of which maps the folio are looked at, each under its
    /// space's young lock (as `checkReferences`); they are returned.
    func checkHugeReferences(_ head: Int32) -> (used: Bool, mapped: MappingKeys) {
        var cpu = memory.testAndClear(.referenced, on: head)
        var device = false
        var mapped = MappingKeys()
        forEachMapping(of: head) { space, block in
            space.youngLock.withLock {
                var maps = false
                space.ptl.withLock {
                    space.pageTable.forEachEntry(from: block >> 12, to: (block + AddressSpace.hugeSize) >> 12) { _, pte in
                        guard pte.isPresent, pte.isHuge, memory.head(of: pte.frame) == head else { return }
                        maps = true
                        guard pte.isAccessed else { return }
                        pte = pte.with(accessed: false)
                        cpu = true
                    }
                }
                guard maps else { return }
                mapped.insert(MappingKey(space: space.id, address: block))
                if !faults.contains(.skipYoungCheck), space.notifiers.clearYoung(start: block, end: block + AddressSpace.hugeSize) {
                    device = true
                }
            }
        }
        if device { statistics.keptBySecondaryYoung.add(1, ordering: .relaxed) } else if cpu { statistics.keptYoung.add(1, ordering: .relaxed) }
        return (cpu || device, mapped)
    }
}
