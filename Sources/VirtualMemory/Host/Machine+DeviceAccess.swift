import LabSync
public import MMUNotifier

// The check of every device access (DMA) against the primary MMU: the
// oracle's rule "no stale translation" (docs: the oracle), applied at the
// moment of the access, under the page-table lock, so it sees exactly the
// PTE and the in-flight invalidations the access races with.

extension Machine {
    /// A device reads the page through `translation` (DMA), checked as
    /// `dmaAccess` says. `issuer` names the device, so it is held to what
    /// its own callbacks acknowledged.
    public func dmaRead(_ space: AddressSpace, _ translation: DeviceTranslation, issuer: DeviceID? = nil) -> [UInt8] {
        dmaAccess(space, translation, issuer: issuer, write: false) { Array($0) }
    }

    /// A device writes `bytes` at the start of the page through
    /// `translation`, checked as `dmaAccess` says. The caller reports the
    /// page dirty separately.
    public func dmaWrite(_ space: AddressSpace, _ translation: DeviceTranslation, _ bytes: [UInt8], issuer: DeviceID? = nil) {
        dmaAccess(space, translation, issuer: issuer, write: true) { page in
            bytes.withUnsafeBytes { page.baseAddress!.copyMemory(from: $0.baseAddress!, byteCount: min(bytes.count, page.count)) }
        }
    }

    /// Runs a device access through `t`, checking it first, and returns
    /// what `body` returned. The access must reach:
    ///
    /// - a frame (or device page) in the generation the device translated
    ///   it in: anything else is a *use after free*;
    /// - if `issuer` acknowledged an invalidation of the address that is
    ///   still in progress, only what the primary maps there now, and only
    ///   once that invalidation's PTE rewrite is done (or if the event
    ///   leaves frames in place: mprotect, write-protect, soft-dirty);
    ///   anything else is a *stale translation*, freed or not (the pages
    ///   may be freed inside the bracket, as Linux's zap does);
    /// - otherwise, what the primary maps there now, or the old frame while
    ///   an invalidation the device has not yet acknowledged is in
    ///   progress (before its callback runs, or while it runs and drains
    ///   its in-flight DMA), or a frame the device pinned or holds a page
    ///   reference on: anything else is a *stale translation* (a reference
    ///   excuses nothing inside the device's acknowledged bracket, above);
    /// - for a page a device holds exclusive (`makeExclusive`), only that
    ///   device; and a translation taken exclusive only while the entry is
    ///   still the device-exclusive one its device holds;
    /// - with the permissions the primary maps it with: no access to a
    ///   PROT_NONE page, no write to a page mapped read-only or through a
    ///   translation given read-only (pins keep their own permission).
    ///
    /// A broken rule is recorded in `violations`, and the access still
    /// happens, as it would on hardware; only a write to the shared zero
    /// page is dropped (an IOMMU maps it read-only, and the whole machine
    /// relies on it staying zero).
    public func dmaAccess<R>(
        _ space: AddressSpace, _ t: DeviceTranslation, issuer: DeviceID? = nil, write: Bool, _ body: (UnsafeMutableRawBufferPointer) -> R
    ) -> R {
        // A translation to device memory must reach the device page the
        // primary's entry names now, in the generation the device took.
        let home = t.devicePage.map { deviceMemory(of: $0)! }
        return space.ptl.withLock {
            let pte = space.pageTable.entry(t.address >> 12)
            let sameGeneration: Bool
            let maps: Bool
            let pinned: Bool
            let referenced: Bool
            var target: UnsafeMutableRawBufferPointer
            if let page = t.devicePage, let home {
                sameGeneration = home.generation(of: page) == t.generation
                maps = pte.isDevicePrivate && pte.devicePage == page
                pinned = false
                referenced = false
                target = home.payload(of: page)
            } else {
                let frame = t.frame.frame
                sameGeneration = memory.generation(of: frame) == t.generation
                // A device-exclusive entry reaches only its holder; a
                // translation taken exclusive is good only while the entry
                // is still exclusive to it (once the CPU took the page
                // back, its atomics are no longer atomic).
                maps = pte.isPresent && pte.frame == frame
                    && (pte.isDeviceExclusive ? issuer != nil && space.exclusiveHolders[t.address >> 12] == issuer : !t.exclusive)
                // A reference held keeps the frame as a pin does (the
                // generation check above catches one put and freed).
                pinned = t.pinned && memory.pincount(of: frame) > 0
                referenced = t.referenced
                target = memory.payload(of: frame)
                if write && frame == zeroFrame {
                    target = UnsafeMutableRawBufferPointer(start: scratchPage, count: memory.payloadSize)
                }
            }
            if let (kind, acknowledged) = judge(
                space, t, issuer: issuer, write: write, pte: pte, sameGeneration: sameGeneration, maps: maps, pinned: pinned,
                referenced: referenced)
            {
                violations.record(
                    MemoryViolation(
                        kind: kind, addressSpace: space.id, address: t.address, frame: t.frame, generation: t.generation,
                        primaryFrame: pte.isPresent ? PageFrameNumber(pte.frame) : nil, devicePage: t.devicePage, issuer: issuer,
                        write: write, acknowledged: acknowledged, nanoseconds: sync.nowNanoseconds(), step: sync.currentStep))
            }
            return body(target)
        }
    }

    /// The rule of `dmaAccess` (page-table lock held): the broken rule and,
    /// for a stale translation inside an acknowledged bracket, that
    /// invalidation; nil if the access is allowed.
    private func judge(
        _ space: AddressSpace, _ t: DeviceTranslation, issuer: DeviceID?, write: Bool, pte: PTE, sameGeneration: Bool, maps: Bool,
        pinned: Bool, referenced: Bool
    ) -> (MemoryViolation.Kind, InvalidationRange?)? {
        space.ptl.assertHeld()
        if !sameGeneration { return (.useAfterFree, nil) }
        // What this device acknowledged binds it until the range ends. A
        // page reference does not excuse a use here: the device said it
        // stopped using the page while the primary changes its mapping (the
        // reference keeps the frame, not the mapping), so a DMA inside its
        // acknowledged bracket through a translation the primary no longer
        // has is stale. (After the range, a referenced page is one the
        // driver holds, as a kmap of it is: like a pin, its own business.)
        if let issuer {
            for tracked in space.inFlight where tracked.range.contains(t.address) && tracked.isAcknowledged(by: issuer, at: t.address) {
                let excused = pinned || maps && (tracked.keepsFrames || tracked.rewritten)
                if !excused { return (.staleTranslation, tracked.range) }
            }
        }
        if !(maps || pinned || referenced) {
            // The old frame stays legal only while an invalidation of the
            // address is in progress that this device has not acknowledged.
            let pending = space.inFlight.contains { tracked in
                tracked.range.contains(t.address) && !(issuer.map { tracked.isAcknowledged(by: $0, at: t.address) } ?? false)
            }
            if !pending { return (.staleTranslation, nil) }
        }
        if maps && !(pinned || referenced) {
            if pte.isProtNone { return (.protNoneAccess, nil) }
            if write && !pte.isWritable {
                // A change_pte device may finish the writes already on
                // their way until the ksm range ends (InFlightInvalidation.keeps).
                let flushing = issuer.map { device in
                    space.inFlight.contains { $0.range.event == .ksm && $0.range.contains(t.address) && $0.keeps(device) }
                } ?? false
                if !flushing { return (.writeThroughReadOnly, nil) }
            }
        }
        if write && !t.writable { return (.writeThroughReadOnly, nil) }
        return nil
    }

    /// A device tried to reach address space `space`, which has exited
    /// (its plugin kept a translation `release` should have torn down).
    /// Recorded; the access does not happen.
    public func recordAccessAfterExit(_ space: AddressSpaceID, _ t: DeviceTranslation, issuer: DeviceID?, write: Bool) {
        violations.record(
            MemoryViolation(
                kind: .accessAfterExit, addressSpace: space, address: t.address, frame: t.frame, generation: t.generation,
                primaryFrame: nil, devicePage: t.devicePage, issuer: issuer, write: write, nanoseconds: sync.nowNanoseconds(), step: sync.currentStep))
    }
}
