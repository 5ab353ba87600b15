public import MMUNotifier

/// Reading the primary's page table without faulting anything in (Linux:
/// `hmm_range_fault` with no `HMM_PFN_REQ_FAULT` in any entry's request).
extension AddressSpace {
    /// The translations of `[start, start + length)` as the primary maps
    /// them now, one entry a page: nil where nothing a device could use is
    /// mapped (not present, swapped out, PROT_NONE, a device-exclusive
    /// entry, a page in another device's memory). Faults nothing in, moves
    /// nothing home and marks nothing accessed: a snapshot, as Linux's
    /// page-table walk is when no fault is required. Pages in the device
    /// memory of `devicePrivateOwner` come as its device-page translations
    /// (Linux: `hmm_range.dev_private_owner`). No reference is kept: like
    /// `faultRange`, the entries are only good until an invalidation, which
    /// the caller's interval `readRetry` catches. Takes the mmap lock
    /// shared: may sleep.
    public func lookupRange(start: UInt64, length: UInt64, devicePrivateOwner: OwnerCookie? = nil) throws(MemoryError)
        -> [DeviceTranslation?]
    {
        try checkRange(start, length)
        return try withMmapShared { () throws(MemoryError) -> [DeviceTranslation?] in
            try checkAlive()
            var result: [DeviceTranslation?] = []
            result.reserveCapacity(Int(length >> 12))
            ptl.withLock {
                for address in stride(from: start, to: start + length, by: 4096) {
                    let pte = pageTable.entry(address >> 12)
                    if pte.isDevicePrivate {
                        result.append(devicePrivateOwner.flatMap { ownDevicePage(address, pte, owner: $0, write: false) })
                    } else if pte.isAccessible {
                        result.append(
                            DeviceTranslation(
                                address: address, frame: PageFrameNumber(pte.frame), generation: memory.generation(of: pte.frame),
                                writable: pte.isWritable, pinned: false, huge: pte.isHuge))
                    } else {
                        result.append(nil)
                    }
                }
            }
            assert(result.count == Int(length >> 12), "one entry a page")
            return result
        }
    }
}
