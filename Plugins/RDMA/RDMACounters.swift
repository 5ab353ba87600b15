import Synchronization

/// The RDMA plugin's counters (its `stats`), readable from any thread.
final class RDMACounters: Sendable {
    // Gauges: what is registered now.
    let odpRegions = Atomic<UInt64>(0)
    let implicitRegions = Atomic<UInt64>(0)
    let pinnedRegions = Atomic<UInt64>(0)
    /// Pages pinned by registrations without ODP: memory reclaim cannot touch.
    let pinnedPages = Atomic<UInt64>(0)
    let implicitChildren = Atomic<UInt64>(0)

    let remoteReads = Atomic<UInt64>(0)
    let remoteWrites = Atomic<UInt64>(0)
    let remoteAccessErrors = Atomic<UInt64>(0)
    let pageFaults = Atomic<UInt64>(0)
    let pagesFaulted = Atomic<UInt64>(0)
    let faultRetries = Atomic<UInt64>(0)
    let prefetches = Atomic<UInt64>(0)
    let invalidations = Atomic<UInt64>(0)
    let nonBlockableRetries = Atomic<UInt64>(0)
    let pagesZapped = Atomic<UInt64>(0)
    let drainWaits = Atomic<UInt64>(0)
    let pagesDirtied = Atomic<UInt64>(0)
    let childrenCreated = Atomic<UInt64>(0)
    let childrenFreed = Atomic<UInt64>(0)
    /// A gauge: DMA transfers between their translation and their end.
    let dmaInFlight = Atomic<UInt64>(0)

    var all: [(name: String, value: UInt64)] {
        func v(_ a: borrowing Atomic<UInt64>) -> UInt64 { a.load(ordering: .relaxed) }
        return [
            ("odp regions", v(odpRegions)), ("implicit regions", v(implicitRegions)), ("pinned regions", v(pinnedRegions)),
            ("pinned pages", v(pinnedPages)), ("implicit children", v(implicitChildren)),
            ("remote reads", v(remoteReads)), ("remote writes", v(remoteWrites)), ("remote access errors", v(remoteAccessErrors)),
            ("page faults", v(pageFaults)), ("pages faulted", v(pagesFaulted)), ("fault retries", v(faultRetries)),
            ("prefetches", v(prefetches)), ("invalidations", v(invalidations)), ("retries", v(nonBlockableRetries)),
            ("pages zapped", v(pagesZapped)), ("drain waits", v(drainWaits)), ("pages dirtied", v(pagesDirtied)),
            ("children created", v(childrenCreated)), ("children freed", v(childrenFreed)), ("dma in flight", v(dmaInFlight)),
        ]
    }
}

extension Atomic<UInt64> {
    func bump(_ by: UInt64 = 1) { add(by, ordering: .relaxed) }
    func drop(_ by: UInt64 = 1) { subtract(by, ordering: .relaxed) }
}
