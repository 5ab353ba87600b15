import DevicePluginKit

/// The KVM plugin's counters (its `stats`), readable from any thread.
typealias KVMCounters = PluginCounters<KVMCounter>

/// The names of the KVM plugin's counters, in the order its `stats` lists them.
enum KVMCounter: Int, PluginCounterName {
    // Gauges.
    case vms
    case memslots

    case guestReads
    case guestWrites
    case tlbHits
    /// Accesses that walked the EPT and found a usable entry.
    case tlbMisses
    case tlbFlushes
    case eptViolations
    /// Faults that found an invalidation raced with them (`mmu_invalidate_retry_gfn`).
    case faultRetries
    case pagesInstalled
    case invalidations
    case nonBlockableInvalidations
    case entriesZapped
    case flushRequests
    /// vCPUs a flush found in guest mode and waited for.
    case flushWaits
    case pagesDirtied
    case youngChecks
    /// clear_young answers "used": pages reclaim kept because the guest uses them.
    case youngAnswers
    case accessedBitsCleared
    case ksmStartsSkipped
    case changePTEWriteProtects
    /// Entries change_pte repointed at a merged page: each a refault saved.
    case refaultsSaved
    /// Without change_pte: entries ksm invalidations zapped, and the faults
    /// that brought them back (what change_pte saves).
    case ksmZaps
    case ksmRefaults
    case dirtyLogFaults
    case dirtyPagesReported
    case releases

    var label: String {
        switch self {
        case .vms: "vms"
        case .memslots: "memslots"
        case .guestReads: "guest reads"
        case .guestWrites: "guest writes"
        case .tlbHits: "tlb hits"
        case .tlbMisses: "tlb misses"
        case .tlbFlushes: "tlb flushes"
        case .eptViolations: "ept violations"
        case .faultRetries: "fault retries"
        case .pagesInstalled: "pages installed"
        case .invalidations: "invalidations"
        case .nonBlockableInvalidations: "non-blockable invalidations"
        case .entriesZapped: "entries zapped"
        case .flushRequests: "flush requests"
        case .flushWaits: "flush waits"
        case .pagesDirtied: "pages dirtied"
        case .youngChecks: "young checks"
        case .youngAnswers: "young answers"
        case .accessedBitsCleared: "accessed bits cleared"
        case .ksmStartsSkipped: "ksm starts skipped"
        case .changePTEWriteProtects: "change_pte write-protects"
        case .refaultsSaved: "refaults saved"
        case .ksmZaps: "ksm zaps"
        case .ksmRefaults: "ksm refaults"
        case .dirtyLogFaults: "dirty log faults"
        case .dirtyPagesReported: "dirty pages reported"
        case .releases: "releases"
        }
    }
}
