import LabSync
import MMUNotifier

// userfaultfd write-protect (Linux: UFFDIO_REGISTER with
// UFFDIO_REGISTER_MODE_WP, UFFDIO_WRITEPROTECT; mwriteprotect_range ->
// change_protection with MM_CP_UFFD_WP, which sends
// MMU_NOTIFY_PROTECTION_VMA): a monitor write-protects a range (a live
// snapshot, a VM's background snapshot), CPU writes to it wait until the
// monitor resolves them by write-unprotecting the page, and a device's
// fault for a write fails (hmm_range_fault's fault cannot wait for the
// monitor: VM_FAULT_SIGBUS, -EFAULT), as a device must then retry. The
// secondaries hear both changes as `mprotect` (PROTECTION_VMA).

extension AddressSpace {
    /// Registers `[start, start + length)` with the (one, implicit)
    /// userfaultfd for write-protect faults (Linux: `UFFDIO_REGISTER_MODE_WP`).
    /// Private anonymous memory only. No invalidation: nothing is mapped
    /// differently yet.
    public func registerUserfault(start: UInt64, length: UInt64) throws(MemoryError) {
        try checkRange(start, length)
        try mmapLock.withExclusive { () throws(MemoryError) in
            try checkAlive()
            let end = start + length
            guard covered(start, end) else { throw .segmentationFault(start) }
            if let other = vmas.first(where: { $0.end > start && $0.start < end && $0.kind != .anonymousPrivate }) {
                throw .invalidArgument("userfaultfd write-protect here applies to private anonymous memory, not to \(other)")
            }
            for vma in carve(start, end) { vma.userfaultWP = true }
        }
    }

    /// Write-protects (`protect`) or write-unprotects the pages of
    /// `[start, start + length)` for the userfaultfd monitor (Linux:
    /// `UFFDIO_WRITEPROTECT`), under an `mprotect` (PROTECTION_VMA)
    /// invalidation of each VMA's part: protecting makes every present PTE
    /// read-only and marks it (swap and migration entries keep the mark),
    /// so secondaries must drop their writable translations; unprotecting
    /// clears the mark (the page stays read-only until a write fault
    /// reuses or copies it) and wakes the CPU writers waiting on it.
    /// Fails with `invalidArgument` if part of the range is not registered.
    public func userfaultWriteProtect(start: UInt64, length: UInt64, protect: Bool) throws(MemoryError) {
        try checkRange(start, length)
        try mmapLock.withShared { () throws(MemoryError) in
            try checkAlive()
            let end = start + length
            guard covered(start, end) else { throw .segmentationFault(start) }
            let targets = vmas.filter { $0.end > start && $0.start < end }
            guard targets.allSatisfy(\.userfaultWP) else {
                throw .invalidArgument("0x\(String(start, radix: 16)) + \(length) is not registered for userfaultfd write-protect")
            }
            for vma in targets {
                invalidateBlocking(max(start, vma.start), min(end, vma.end), .mprotect) { _, pte, _ in
                    if pte.isPresent {
                        pte = protect ? pte.with(writable: false).with(uffdWP: true) : pte.with(uffdWP: false)
                    } else if pte.isMigration {
                        pte = .migration(frame: pte.frame, writable: pte.isWritable && !protect, protNone: pte.migrationIsProtNone, uffdWP: protect)
                    } else if pte.isSwap {
                        pte = pte.with(uffdWP: protect)
                    }
                }
            }
        }
        if !protect {
            userfaultResolutions.add(1, ordering: .releasing)
            userfaultWaits.wakeAll()
        }
    }

    /// Unregisters `[start, start + length)` from userfaultfd write-protect
    /// (Linux: `UFFDIO_UNREGISTER`, or the userfaultfd's release): every
    /// registered VMA part gets an `mprotect` (PROTECTION_VMA) invalidation
    /// that clears its write-protect marks (`uffd_wp_range(..., false)`),
    /// marked or not, and waiting writers are woken.
    public func unregisterUserfault(start: UInt64, length: UInt64) throws(MemoryError) {
        try checkRange(start, length)
        try mmapLock.withExclusive { () throws(MemoryError) in
            try checkAlive()
            let end = start + length
            for vma in carve(start, end) where vma.userfaultWP {
                invalidateBlocking(vma.start, vma.end, .mprotect) { _, pte, _ in
                    if pte.isMigration {
                        pte = .migration(frame: pte.frame, writable: pte.isWritable, protNone: pte.migrationIsProtNone, uffdWP: false)
                    } else {
                        pte = pte.with(uffdWP: false)
                    }
                }
                vma.userfaultWP = false
            }
        }
        userfaultResolutions.add(1, ordering: .releasing)
        userfaultWaits.wakeAll()
    }

    /// The addresses CPU writes are waiting on since the last call (Linux:
    /// reading the userfaultfd's fault messages), oldest first.
    public func pendingUserfaults() -> [UInt64] {
        userfaultQueue.withLock { queue in
            defer { queue.removeAll() }
            return queue
        }
    }

    /// A CPU write found the page at `page` write-protected for the
    /// monitor: it is queued for the monitor, and the caller waits (with
    /// no mmap lock held, as `handle_userfault` drops it) until the mark
    /// is gone, the page is gone, or the space is dying. Bounded: a monitor
    /// that never answers is a lab bug, reported instead of a hang.
    func waitForUserfault(_ page: UInt64) throws(MemoryError) {
        userfaultQueue.withLock { if !$0.contains(page) { $0.append(page) } }
        machine.statistics.userfaultWaits.add(1, ordering: .relaxed)
        var waited: Duration = .zero
        while true {
            try checkAlive()
            // Looked at under the page-table lock, outside the wait queue's
            // own lock; the wait itself watches only a counter of
            // resolutions (or times out), so nothing is taken inside it.
            if !translate(page).isUffdWP { return }
            let seen = userfaultResolutions.load(ordering: .acquiring)
            let start = machine.sync.now()
            _ = userfaultWaits.wait(timeout: .milliseconds(5)) {
                userfaultResolutions.load(ordering: .acquiring) != seen || stateWord.load(ordering: .acquiring) != State.alive.rawValue
            }
            waited += machine.sync.now() - start
            precondition(waited < .seconds(60), "a CPU write waited \(waited) for the userfaultfd monitor to resolve 0x\(String(page, radix: 16))")
        }
    }
}
