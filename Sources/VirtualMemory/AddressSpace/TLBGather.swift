/// How the pages a zap gathers are flushed and freed: Linux's `struct
/// mmu_gather` (mm/mmu_gather.c), which frees pages *inside* the
/// invalidation bracket whenever its batch fills.
///
/// A gather starts with room for `bundle` pages on the stack
/// (MMU_GATHER_BUNDLE). When that fills it tries to take a page for a
/// further batch of `pagesPerBatch` entries, with GFP_NOWAIT, at most
/// `maximumBatches` times (MAX_GATHER_BATCH_COUNT); when it cannot (memory
/// is at its min watermark, or the batches are used up) it flushes: the
/// TLBs, the secondary TLBs, then the pages are freed, and gathering goes
/// on. So under memory pressure a zap frees every few pages while the
/// range is still in progress. The model takes no frame for a batch page;
/// it only asks whether one could be had.
struct TLBGather {
    static let bundle = 8
    /// (4096 - header) / sizeof(pointer) on x86-64.
    static let pagesPerBatch = 510
    /// 10,000 pages' worth of batches.
    static let maximumBatches = 10_000 / pagesPerBatch

    /// Pages the gather holds before it must flush.
    private(set) var capacity = bundle
    private var batches = 0

    /// The batch is full: grows it if a batch page could be had (returns
    /// false: keep gathering), or says the caller must flush now (true).
    mutating func mustFlushWhenFull(memory: PhysicalMemory) -> Bool {
        let canAllocate = memory.nodes.contains { $0.freeCount > memory.configuration.minFree }
        guard batches < Self.maximumBatches, canAllocate else { return true }
        batches += 1
        capacity += Self.pagesPerBatch
        return false
    }
}
