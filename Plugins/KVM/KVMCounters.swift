import Synchronization

/// The KVM plugin's counters (its `stats`), readable from any thread.
final class KVMCounters: Sendable {
    // Gauges.
    let vms = Atomic<UInt64>(0)
    let memslots = Atomic<UInt64>(0)

    let guestReads = Atomic<UInt64>(0)
    let guestWrites = Atomic<UInt64>(0)
    let tlbHits = Atomic<UInt64>(0)
    /// Accesses that walked the EPT and found a usable entry.
    let tlbMisses = Atomic<UInt64>(0)
    let tlbFlushes = Atomic<UInt64>(0)
    let eptViolations = Atomic<UInt64>(0)
    /// Faults that found an invalidation raced with them (`mmu_invalidate_retry_gfn`).
    let faultRetries = Atomic<UInt64>(0)
    let pagesInstalled = Atomic<UInt64>(0)
    let invalidations = Atomic<UInt64>(0)
    let nonBlockableInvalidations = Atomic<UInt64>(0)
    let entriesZapped = Atomic<UInt64>(0)
    let flushRequests = Atomic<UInt64>(0)
    /// vCPUs a flush found in guest mode and waited for.
    let flushWaits = Atomic<UInt64>(0)
    let pagesDirtied = Atomic<UInt64>(0)
    let youngChecks = Atomic<UInt64>(0)
    /// clear_young answers "used": pages reclaim kept because the guest uses them.
    let youngAnswers = Atomic<UInt64>(0)
    let accessedBitsCleared = Atomic<UInt64>(0)
    let ksmStartsSkipped = Atomic<UInt64>(0)
    let changePTEWriteProtects = Atomic<UInt64>(0)
    /// Entries change_pte repointed at a merged page: each a refault saved.
    let refaultsSaved = Atomic<UInt64>(0)
    /// Without change_pte: entries ksm invalidations zapped, and the faults
    /// that brought them back (what change_pte saves).
    let ksmZaps = Atomic<UInt64>(0)
    let ksmRefaults = Atomic<UInt64>(0)
    let dirtyLogFaults = Atomic<UInt64>(0)
    let dirtyPagesReported = Atomic<UInt64>(0)
    let releases = Atomic<UInt64>(0)

    var all: [(name: String, value: UInt64)] {
        func v(_ a: borrowing Atomic<UInt64>) -> UInt64 { a.load(ordering: .relaxed) }
        return [
            ("vms", v(vms)), ("memslots", v(memslots)),
            ("guest reads", v(guestReads)), ("guest writes", v(guestWrites)), ("tlb hits", v(tlbHits)),
            ("tlb misses", v(tlbMisses)), ("tlb flushes", v(tlbFlushes)), ("ept violations", v(eptViolations)),
            ("fault retries", v(faultRetries)), ("pages installed", v(pagesInstalled)), ("invalidations", v(invalidations)),
            ("non-blockable invalidations", v(nonBlockableInvalidations)), ("entries zapped", v(entriesZapped)),
            ("flush requests", v(flushRequests)), ("flush waits", v(flushWaits)), ("pages dirtied", v(pagesDirtied)),
            ("young checks", v(youngChecks)), ("young answers", v(youngAnswers)), ("accessed bits cleared", v(accessedBitsCleared)),
            ("ksm starts skipped", v(ksmStartsSkipped)), ("change_pte write-protects", v(changePTEWriteProtects)),
            ("refaults saved", v(refaultsSaved)), ("ksm zaps", v(ksmZaps)), ("ksm refaults", v(ksmRefaults)),
            ("dirty log faults", v(dirtyLogFaults)), ("dirty pages reported", v(dirtyPagesReported)), ("releases", v(releases)),
        ]
    }
}

extension Atomic<UInt64> {
    func bump(_ by: UInt64 = 1) { add(by, ordering: .relaxed) }
    func drop(_ by: UInt64 = 1) { subtract(by, ordering: .relaxed) }
}
