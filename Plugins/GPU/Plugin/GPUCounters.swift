import Synchronization

/// The GPU plugin's counters (its `stats`), readable from any thread.
final class GPUCounters: Sendable {
    let faults = Atomic<UInt64>(0)
    let faultBatches = Atomic<UInt64>(0)
    let batchedFaults = Atomic<UInt64>(0)
    let faultRetries = Atomic<UInt64>(0)
    let faultErrors = Atomic<UInt64>(0)
    let faultBufferOverflows = Atomic<UInt64>(0)
    let replays = Atomic<UInt64>(0)
    let tlbHits = Atomic<UInt64>(0)
    let tlbMisses = Atomic<UInt64>(0)
    let tlbFlushes = Atomic<UInt64>(0)
    let hugeMappings = Atomic<UInt64>(0)
    /// 2 MiB entries whose 512 pages are one huge page of the primary's.
    let hugeOverHugePages = Atomic<UInt64>(0)
    let tableCacheEmpty = Atomic<UInt64>(0)
    let invalidations = Atomic<UInt64>(0)
    let nonBlockableRetries = Atomic<UInt64>(0)
    let ownMigrationsSkipped = Atomic<UInt64>(0)
    let fenceWaits = Atomic<UInt64>(0)
    let notifiersInserted = Atomic<UInt64>(0)
    let rangesCreated = Atomic<UInt64>(0)
    let rangesCollected = Atomic<UInt64>(0)
    let migratedToVRAM = Atomic<UInt64>(0)
    let migratedToHost = Atomic<UInt64>(0)
    let vramEvictions = Atomic<UInt64>(0)
    let shrinkerZapped = Atomic<UInt64>(0)
    let shrinkerStops = Atomic<UInt64>(0)
    let dmaReads = Atomic<UInt64>(0)
    let dmaWrites = Atomic<UInt64>(0)
    /// Atomics, pages taken exclusive for them, takes that raced an
    /// invalidation, and its own exclusive conversions skipped.
    let atomics = Atomic<UInt64>(0)
    let exclusiveTaken = Atomic<UInt64>(0)
    let exclusiveRetries = Atomic<UInt64>(0)
    let ownExclusiveSkipped = Atomic<UInt64>(0)
    /// A gauge: GPU accesses holding a fence now.
    let workInFlight = Atomic<UInt64>(0)

    var all: [(name: String, value: UInt64)] {
        func v(_ a: borrowing Atomic<UInt64>) -> UInt64 { a.load(ordering: .relaxed) }
        return [
            ("faults", v(faults)), ("fault batches", v(faultBatches)), ("batched faults", v(batchedFaults)),
            ("fault retries", v(faultRetries)), ("fault errors", v(faultErrors)), ("fault buffer overflows", v(faultBufferOverflows)),
            ("replays", v(replays)), ("tlb hits", v(tlbHits)), ("tlb misses", v(tlbMisses)), ("tlb flushes", v(tlbFlushes)),
            ("2M mappings", v(hugeMappings)), ("2M over huge pages", v(hugeOverHugePages)), ("table cache empty", v(tableCacheEmpty)), ("invalidations", v(invalidations)),
            ("retries", v(nonBlockableRetries)), ("own migrations skipped", v(ownMigrationsSkipped)), ("fence waits", v(fenceWaits)),
            ("notifiers inserted", v(notifiersInserted)), ("ranges created", v(rangesCreated)), ("ranges collected", v(rangesCollected)),
            ("migrations", v(migratedToVRAM)), ("migrations to host", v(migratedToHost)), ("vram evictions", v(vramEvictions)),
            ("shrinker zapped", v(shrinkerZapped)), ("shrinker stops", v(shrinkerStops)),
            ("dma reads", v(dmaReads)), ("dma writes", v(dmaWrites)), ("work in flight", v(workInFlight)),
            ("atomics", v(atomics)), ("exclusive taken", v(exclusiveTaken)), ("exclusive retries", v(exclusiveRetries)),
            ("own exclusive skipped", v(ownExclusiveSkipped)),
        ]
    }
}
