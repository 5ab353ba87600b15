import DevicePluginKit

/// The RDMA plugin's counters (its `stats`), readable from any thread.
typealias RDMACounters = PluginCounters<RDMACounter>

/// The names of the RDMA plugin's counters, in the order its `stats` lists them.
enum RDMACounter: Int, PluginCounterName {
    // Gauges: what is registered now.
    case odpRegions
    case implicitRegions
    case pinnedRegions
    /// Pages pinned by registrations without ODP: memory reclaim cannot touch.
    case pinnedPages
    case implicitChildren

    case remoteReads
    case remoteWrites
    case remoteAccessErrors
    case pageFaults
    case pagesFaulted
    case faultRetries
    case prefetches
    case invalidations
    case nonBlockableRetries
    case pagesZapped
    case drainWaits
    case pagesDirtied
    case childrenCreated
    case childrenFreed
    /// A gauge: DMA transfers between their translation and their end.
    case dmaInFlight

    var label: String {
        switch self {
        case .odpRegions: "odp regions"
        case .implicitRegions: "implicit regions"
        case .pinnedRegions: "pinned regions"
        case .pinnedPages: "pinned pages"
        case .implicitChildren: "implicit children"
        case .remoteReads: "remote reads"
        case .remoteWrites: "remote writes"
        case .remoteAccessErrors: "remote access errors"
        case .pageFaults: "page faults"
        case .pagesFaulted: "pages faulted"
        case .faultRetries: "fault retries"
        case .prefetches: "prefetches"
        case .invalidations: "invalidations"
        case .nonBlockableRetries: "retries"
        case .pagesZapped: "pages zapped"
        case .drainWaits: "drain waits"
        case .pagesDirtied: "pages dirtied"
        case .childrenCreated: "children created"
        case .childrenFreed: "children freed"
        case .dmaInFlight: "dma in flight"
        }
    }
}
