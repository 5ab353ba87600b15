import LabSync
public import MMUNotifier

// Device-exclusive entries (Linux: make_device_exclusive, used by nouveau
// for GPU atomics on system memory): a device takes a page exclusive, so
// the CPU cannot touch it while the device's atomic operations run; any
// CPU access (or another device's fault) gives the page back.
//
// Linux: make_device_exclusive faults the page in writable, locks it and
// replaces the PTE by a device-exclusive entry under an
// MMU_NOTIFY_EXCLUSIVE invalidation carrying the caller's owner, so the
// caller can skip its own conversion. The CPU's fault on such an entry
// (remove_device_exclusive_entry) restores the PTE under an invalidation
// without an owner: MMU_NOTIFY_CLEAR since 6.15 (David Hildenbrand,
// linux-kernel, 2025-02-26, "[PATCH v2 5/5] mm/mmu_notifier: use
// MMU_NOTIFY_CLEAR in remove_device_exclusive_entry()"), before that
// MMU_NOTIFY_EXCLUSIVE with no owner. The model sends `exclusive` both
// ways; the owner tells them apart. The device must drop its exclusive
// entry on the restore: once its callback returns, it may use only what
// the primary maps (the DMA check holds it to that).

extension AddressSpace {
    /// Takes the page at `address` exclusive for `device` (Linux:
    /// `make_device_exclusive`): faults it in writable (breaking
    /// copy-on-write), then, with the page locked, replaces its PTE by a
    /// device-exclusive entry under an `exclusive` invalidation carrying
    /// `owner`, so the caller can skip it while every other secondary
    /// drops its translation. Returns the device's translation (writable,
    /// marked exclusive); install it only if no invalidation of the page
    /// raced (`readRetry`), as after any fault.
    ///
    /// May sleep. Fails as a write fault would (unmapped, read-only), and
    /// with `busy` if the page cannot be had after a bounded number of
    /// tries (someone keeps changing it; Linux retries without bound).
    public func makeExclusive(_ address: UInt64, device: DeviceID, owner: OwnerCookie?) throws(MemoryError) -> DeviceTranslation {
        let page = address & ~4095
        try checkRange(page, 4096)
        return try withMmapShared { () throws(MemoryError) -> DeviceTranslation in
            for _ in 0..<64 {
                try checkAlive()
                let pte = translateLocked(page)
                if pte.isHuge {
                    splitHugePage(at: page)  // Linux: FOLL_SPLIT_PMD
                    continue
                }
                guard pte.isAccessible, pte.isWritable, pte.frame != machine.zeroFrame else {
                    try handleFault(page, write: true)  // also gives back another device's exclusive entry
                    continue
                }
                let frame = pte.frame
                guard memory.tryGet(frame) else { continue }
                memory.lock(frame)
                var taken = false
                invalidateBlocking(page, page + 4096, .exclusive, owner: owner) { _, current, _ in
                    guard current == pte else { return }  // changed since we looked: try again
                    if current.isDirty { memory.setFlags(.dirty, on: frame) }
                    current = current.with(deviceExclusive: true)
                    exclusiveHolders[page >> 12] = device
                    taken = true
                }
                let generation = memory.generation(of: frame)
                memory.unlock(frame)
                memory.put(frame)
                if taken {
                    machine.statistics.exclusiveTaken.add(1, ordering: .relaxed)
                    return DeviceTranslation(
                        address: page, frame: PageFrameNumber(frame), generation: generation, writable: true, pinned: false, exclusive: true)
                }
            }
            throw .busy("the page at 0x\(String(page, radix: 16)) kept changing; it could not be taken exclusive")
        }
    }

    /// Gives a device-exclusive page back to the CPU (mmap lock held; Linux:
    /// `remove_device_exclusive_entry`): with the page locked, under an
    /// `exclusive` invalidation with no owner (every device, the holder
    /// included, must drop its translation), the PTE becomes the normal
    /// entry again, dirty if writable (the device may have written it).
    func giveBackExclusive(_ page: UInt64, _ pte: PTE) {
        let frame = pte.frame
        guard memory.tryGet(frame) else { return }  // gone meanwhile: the caller retries
        memory.lock(frame)
        invalidateBlocking(page, page + 4096, .exclusive) { _, current, _ in
            guard current == pte else { return }
            current = current.with(deviceExclusive: false).with(dirty: current.isWritable || current.isDirty)
            exclusiveHolders.removeValue(forKey: page >> 12)
        }
        memory.unlock(frame)
        memory.put(frame)
        machine.statistics.exclusiveGivenBack.add(1, ordering: .relaxed)
    }
}
