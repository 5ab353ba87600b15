import LabSync
public import MMUNotifier
import Synchronization

/// A translation a device took from the primary MMU: which frame backs a
/// page, and that frame's generation at the time, so any later use of a
/// freed and reused frame is caught.
public struct DeviceTranslation: Sendable, Hashable, CustomStringConvertible {
    public let address: UInt64
    public let frame: PageFrameNumber
    public let generation: UInt32
    public let writable: Bool
    /// Taken with `pin`: the frame stays allocated until unpinned.
    public let pinned: Bool
    /// Set when the page lives in the asking device's own memory (then
    /// `frame` is the device page's raw value, and `generation` its generation).
    public let devicePage: DevicePage?
    /// Taken with `makeExclusive`: good only while the primary's entry is
    /// the device-exclusive one this device holds.
    public let exclusive: Bool
    /// The page is part of a huge page's PMD mapping: the aligned 2 MiB
    /// around it is one folio, mapped with one permission, so a device may
    /// map it with one 2 MiB entry (every change to any part of it comes as
    /// an invalidation of the whole 2 MiB first: a split, a migration).
    public let huge: Bool
    /// The device holds a reference on the frame (Linux: `get_page`), which
    /// the caller has checked: an access through it reaches the frame while
    /// the frame is in the translation's generation, mapped there or not.
    public let referenced: Bool

    public init(
        address: UInt64, frame: PageFrameNumber, generation: UInt32, writable: Bool, pinned: Bool, devicePage: DevicePage? = nil,
        exclusive: Bool = false, huge: Bool = false, referenced: Bool = false
    ) {
        self.huge = huge
        self.referenced = referenced
        self.address = address
        self.frame = frame
        self.generation = generation
        self.writable = writable
        self.pinned = pinned
        self.devicePage = devicePage
        self.exclusive = exclusive
    }

    public var description: String {
        let target = devicePage.map { "\($0)" } ?? "\(frame)"
        return "0x\(String(address, radix: 16)) -> \(target) gen \(generation)\(writable ? " W" : "")\(pinned ? " pinned" : "")"
            + (exclusive ? " exclusive" : "")
    }
}

extension AddressSpace {
    /// Faults `[start, start + length)` in and returns its translations
    /// (Linux: `hmm_range_fault`). No reference is kept: the device must use
    /// an interval subscription's `readBegin` / `readRetry` around this call
    /// to know the translations are still current when it installs them.
    /// May sleep (it faults); never call it from a non-blockable context.
    ///
    /// Pages in the device memory of `devicePrivateOwner` are returned as
    /// they are, as device-page translations (Linux: `hmm_range.dev_private_owner`);
    /// pages in anyone else's device memory are brought home first.
    public func faultRange(
        start: UInt64, length: UInt64, write: Bool, devicePrivateOwner: OwnerCookie? = nil
    ) throws(MemoryError) -> [DeviceTranslation] {
        try collect(start: start, length: length, write: write, pin: false, devicePrivateOwner: devicePrivateOwner)
    }

    /// Translations with the interval sequence they are valid for.
    public struct FaultedRange: Sendable {
        public let translations: [DeviceTranslation]
        /// Pass to `interval.readRetry` under the device lock before
        /// installing the translations.
        public let sequence: UInt64
    }

    /// `hmm_range_fault` with its notifier: reads the interval's sequence
    /// (`readBegin`, which sleeps while an invalidation of the interval is
    /// in progress), faults the range in, and starts over if an
    /// invalidation touched the interval meanwhile (a bounded number of
    /// times; the device's own `readRetry` under its lock is the final word).
    public func faultRange(
        start: UInt64, length: UInt64, write: Bool, interval: IntervalNotifier, devicePrivateOwner: OwnerCookie? = nil
    ) throws(MemoryError) -> FaultedRange {
        precondition(interval.owner === notifiers, "the interval belongs to another address space")
        var sequence = interval.readBegin()
        var translations = try collect(start: start, length: length, write: write, pin: false, devicePrivateOwner: devicePrivateOwner)
        for _ in 0..<16 where interval.checkRetry(sequence) {
            sequence = interval.readBegin()
            translations = try collect(start: start, length: length, write: write, pin: false, devicePrivateOwner: devicePrivateOwner)
        }
        return FaultedRange(translations: translations, sequence: sequence)
    }

    /// Faults the range in and pins every page (Linux: `pin_user_pages`):
    /// pinned frames are neither reclaimed nor migrated until `unpin`.
    ///
    /// `longTerm` (FOLL_LONGTERM: a pin held for an indefinite time, an
    /// RDMA registration): a page in a movable zone is moved out of it
    /// first, with a `migrate` invalidation every secondary must follow,
    /// then the range is pinned again, as Linux's `__gup_longterm_locked`
    /// loops (`check_and_migrate_movable_pages`): the translations
    /// returned are those of the pinned frames, never of the frames the
    /// pages had before. Fails with `outOfMemory` when a page cannot be
    /// moved (no room in a normal zone) after a bounded number of rounds;
    /// nothing stays pinned then.
    ///
    /// A long-term pin never pins the shared zero page of a private
    /// mapping the process may write: the page is unshared first (a fresh
    /// zeroed page of its own, as Linux's `gup_must_unshare` asks of a
    /// FOLL_LONGTERM read-only pin of a page that is not anonymous in a
    /// copy-on-write mapping), so a later CPU write does not copy it away
    /// from under the device. (The model maps the unshared page writable;
    /// Linux maps it read-only until the write. A mapping the process
    /// cannot write keeps the zero page.)
    public func pin(start: UInt64, length: UInt64, write: Bool, longTerm: Bool = false) throws(MemoryError) -> [DeviceTranslation] {
        guard longTerm else { return try collect(start: start, length: length, write: write, pin: true) }
        for _ in 0..<16 {
            let pinned = try collect(start: start, length: length, write: write, pin: true, unshareZeroPage: true)
            let movable = pinned.filter { memory.isMovable($0.frame.frame) }
            if movable.isEmpty { return pinned }
            // Unpinned before moving (a pinned page cannot move), as Linux
            // unpins the whole batch before migrating.
            machine.unpin(pinned)
            for t in movable {
                let target = memory.node(of: t.frame.frame).id
                if case .migrated = machine.migrate(self, address: t.address, to: target, reason: .longTermPin) {
                    machine.statistics.longTermPinMigrations.add(1, ordering: .relaxed)
                }
            }
        }
        throw .outOfMemory
    }

    private func collect(
        start: UInt64, length: UInt64, write: Bool, pin: Bool, unshareZeroPage: Bool = false, devicePrivateOwner: OwnerCookie? = nil
    ) throws(MemoryError) -> [DeviceTranslation] {
        try checkRange(start, length)
        return try withMmapShared { () throws(MemoryError) -> [DeviceTranslation] in
            var result: [DeviceTranslation] = []
            result.reserveCapacity(Int(length >> 12))
            var address = start
            do throws(MemoryError) {
                while address < start + length {
                    try checkAlive()
                    var hugeToPin = false
                    var unshare = false
                    let taken = ptl.withLock { () -> DeviceTranslation? in
                        let pte = pageTable.entry(address >> 12)
                        if pte.isDevicePrivate, !pin, let owner = devicePrivateOwner {
                            return ownDevicePage(address, pte, owner: owner, write: write)
                        }
                        guard pte.isAccessible, !write || pte.isWritable else { return nil }
                        // A pin splits a huge page first: pins are counted on
                        // the folio, and a folio with pins could never split.
                        if pin && pte.isHuge {
                            hugeToPin = true
                            return nil
                        }
                        if pin && unshareZeroPage && pte.frame == machine.zeroFrame && !pte.isWritable,
                            vma(containing: address)?.protection.contains(.write) == true
                        {
                            unshare = true
                            return nil
                        }
                        if pin && pte.frame != machine.zeroFrame { memory.addPin(pte.frame) }  // the zero page needs no pin
                        pageTable.set(address >> 12, pte.with(accessed: true))
                        return DeviceTranslation(
                            address: address, frame: PageFrameNumber(pte.frame), generation: memory.generation(of: pte.frame),
                            writable: pte.isWritable, pinned: pin, huge: pte.isHuge)
                    }
                    if let taken {
                        result.append(taken)
                        address += 4096
                    } else if hugeToPin {
                        splitHugePage(at: address)
                    } else {
                        try handleFault(address, write: write || unshare)
                    }
                }
            } catch {
                // All or nothing: a pin that fails part way keeps none of the
                // pages it took (Linux: pin_user_pages unpins them on error).
                if pin { for t in result where t.frame.frame != machine.zeroFrame { memory.removePin(t.frame.frame) } }
                throw error
            }
            return result
        }
    }

    /// The translation of a device-private entry for the device that owns
    /// its memory (page-table lock held), or nil if the caller must fault:
    /// another device's page, or a write the entry does not allow yet. A
    /// device page has one mapping, so a write upgrade needs no copy.
    func ownDevicePage(_ address: UInt64, _ pte: PTE, owner: OwnerCookie, write: Bool) -> DeviceTranslation? {
        ptl.assertHeld()
        let page = pte.devicePage
        guard let home = machine.deviceMemory(of: page), home.owner == owner else { return nil }
        var entry = pte
        if write && !pte.isWritable {
            guard let vma = vma(containing: address), vma.protection.contains(.write) else { return nil }
            entry = pte.with(writable: true)
            pageTable.set(address >> 12, entry)
        }
        return DeviceTranslation(
            address: address, frame: PageFrameNumber(page.rawValue), generation: home.generation(of: page),
            writable: entry.isWritable, pinned: false, devicePage: page)
    }
}

extension Machine {
    /// Returns pins taken with `pin` (Linux: `unpin_user_pages_dirty_lock`).
    /// `dirty`: the device wrote the pages, so they are marked dirty first;
    /// a page cleaned by writeback while pinned would otherwise be dropped
    /// clean and the device's writes lost.
    public func unpin(_ translations: [DeviceTranslation], dirty: Bool = false) {
        for t in translations {
            precondition(t.pinned, "unpin of an unpinned translation \(t)")
            if t.frame.frame == zeroFrame { continue }  // pinning the zero page takes nothing
            if dirty { setDirty(t.frame) }
            memory.removePin(t.frame.frame)
        }
    }

    /// A device wrote the frame: its contents must reach the backing store
    /// (Linux: `set_page_dirty` from a driver's invalidate callback; the
    /// dirty state must transfer: Andrea Arcangeli, linux-kernel/kvm-devel,
    /// 2008-01-24, "Re: [kvm-devel] [PATCH] export notifier #1").
    public func setDirty(_ frame: PageFrameNumber) {
        precondition(frame.rawValue <= UInt64(Int32.max), "setDirty of \(frame), which is not a frame (device pages need no dirty bit)")
        if faults.contains(.dropSecondaryDirty) || frame.frame == zeroFrame { return }
        memory.setFlags(.dirty, on: frame.frame)
    }

    /// A device used the frame (Linux: `mark_page_accessed`).
    public func markAccessed(_ frame: PageFrameNumber) {
        memory.setFlags(.referenced, on: frame.frame)
    }

    /// A device reports the page behind its translation `t` dirty
    /// (`set_dirty`) or used (`mark_accessed`), checked as a DMA is for its
    /// first rule: the frame must still be in the generation the device
    /// translated it in. Linux's `set_page_dirty` and `mark_page_accessed`
    /// act on the page structure the driver names; one freed since (the
    /// driver let go of it, or marked it only after its own invalidation
    /// callback returned and the primary freed the page) is another
    /// owner's now or free. Such a call marks nothing (the frame is not the
    /// device's page: its write, if it made one, is already lost) and is
    /// recorded as a *use after free*, with `service` naming the call and
    /// `space` giving the address space of the device's binding (asked only
    /// then; nil if it cannot say: the violation names space 0, which no
    /// address space has).
    ///
    /// The check and the mark are not atomic against a free: a frame freed
    /// between them gets the mark, as before this check (a free page's
    /// flags are reset when it is handed out again, and an extra dirty bit
    /// on a new owner's page costs one write-back, never data).
    public func markFromDevice(
        _ t: DeviceTranslation, service: String, dirty: Bool, space: () -> AddressSpaceID?, issuer: DeviceID?
    ) {
        let frame = t.frame.frame
        precondition(t.frame.rawValue <= UInt64(Int32.max) && t.devicePage == nil, "\(service) of \(t.frame), which is not a frame")
        guard memory.generation(of: frame) == t.generation else {
            violations.record(
                MemoryViolation(
                    kind: .useAfterFree, addressSpace: space() ?? AddressSpaceID(0), address: t.address, frame: t.frame,
                    generation: t.generation, primaryFrame: nil, devicePage: nil, issuer: issuer, write: dirty, service: service,
                    nanoseconds: sync.nowNanoseconds()))
            return
        }
        if dirty { setDirty(t.frame) } else { markAccessed(t.frame) }
    }

    /// A frame for a device's page-table page, charged to physical memory.
    /// In reclaim context (a callback run by reclaim, Linux's PF_MEMALLOC;
    /// docs/CONTRACT.md, rule 16) it comes only from a bounded reserve; outside it,
    /// direct reclaim may run first. Returns nil when none can be had: the
    /// caller must cope (drop the mapping, answer retry), not crash.
    public func allocateDevicePageTablePage() -> PageFrameNumber? {
        let inReclaim = ExecutionContext.isCurrentInReclaim
        if inReclaim {
            guard devicePageTablesInReserve.add(1, ordering: .relaxed).newValue <= configuration.devicePageTableReserve else {
                devicePageTablesInReserve.subtract(1, ordering: .relaxed)
                return nil
            }
            guard let frame = memory.allocate(flags: .devicePageTable, reserve: true, movable: false) else {
                devicePageTablesInReserve.subtract(1, ordering: .relaxed)
                return nil
            }
            memory.setOwner(frame, owner: 0, index: 1)  // index 1 marks a reserve page
            return PageFrameNumber(frame)
        }
        sync.mightReclaim()  // lock order: whatever is held here comes before reclaim
        // Kernel memory: never from a movable zone.
        if let frame = memory.allocate(flags: .devicePageTable, movable: false) { return PageFrameNumber(frame) }
        _ = reclaimDirectly()
        return memory.allocate(flags: .devicePageTable, movable: false).map(PageFrameNumber.init)
    }

    /// Returns a device page-table page.
    public func freeDevicePageTablePage(_ page: PageFrameNumber) {
        let frame = page.frame
        precondition(memory.flags(of: frame).contains(.devicePageTable), "\(page) is not a device page-table page")
        if memory.owner(of: frame).index == 1 { devicePageTablesInReserve.subtract(1, ordering: .relaxed) }
        memory.put(frame)
    }
}
