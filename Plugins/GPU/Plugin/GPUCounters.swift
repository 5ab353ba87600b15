import DevicePluginKit

/// The GPU plugin's counters (its `stats`), readable from any thread.
typealias GPUCounters = PluginCounters<GPUCounter>

/// The names of the GPU plugin's counters, in the order its `stats` lists them.
enum GPUCounter: Int, PluginCounterName {
    case faults
    case faultBatches
    case batchedFaults
    case faultRetries
    case faultErrors
    case faultBufferOverflows
    case replays
    case tlbHits
    case tlbMisses
    case tlbFlushes
    case hugeMappings
    /// 2 MiB entries whose 512 pages are one huge page of the primary's.
    case hugeOverHugePages
    case tableCacheEmpty
    case invalidations
    case nonBlockableRetries
    case ownMigrationsSkipped
    case fenceWaits
    case notifiersInserted
    case rangesCreated
    case rangesCollected
    /// Collections that waited for GPU work still in flight on a range the
    /// fault path retired (`GPUVM.collectGarbage`).
    case rangesDrained
    case migratedToVRAM
    case migratedToHost
    case vramEvictions
    case shrinkerZapped
    case shrinkerStops
    case dmaReads
    case dmaWrites
    /// A gauge: GPU accesses holding a fence now.
    case workInFlight
    /// Atomics, pages taken exclusive for them, takes that raced an
    /// invalidation, and its own exclusive conversions skipped.
    case atomics
    case exclusiveTaken
    case exclusiveRetries
    case ownExclusiveSkipped

    var label: String {
        switch self {
        case .faults: "faults"
        case .faultBatches: "fault batches"
        case .batchedFaults: "batched faults"
        case .faultRetries: "fault retries"
        case .faultErrors: "fault errors"
        case .faultBufferOverflows: "fault buffer overflows"
        case .replays: "replays"
        case .tlbHits: "tlb hits"
        case .tlbMisses: "tlb misses"
        case .tlbFlushes: "tlb flushes"
        case .hugeMappings: "2M mappings"
        case .hugeOverHugePages: "2M over huge pages"
        case .tableCacheEmpty: "table cache empty"
        case .invalidations: "invalidations"
        case .nonBlockableRetries: "retries"
        case .ownMigrationsSkipped: "own migrations skipped"
        case .fenceWaits: "fence waits"
        case .notifiersInserted: "notifiers inserted"
        case .rangesCreated: "ranges created"
        case .rangesCollected: "ranges collected"
        case .rangesDrained: "ranges drained"
        case .migratedToVRAM: "migrations"
        case .migratedToHost: "migrations to host"
        case .vramEvictions: "vram evictions"
        case .shrinkerZapped: "shrinker zapped"
        case .shrinkerStops: "shrinker stops"
        case .dmaReads: "dma reads"
        case .dmaWrites: "dma writes"
        case .workInFlight: "work in flight"
        case .atomics: "atomics"
        case .exclusiveTaken: "exclusive taken"
        case .exclusiveRetries: "exclusive retries"
        case .ownExclusiveSkipped: "own exclusive skipped"
        }
    }
}
