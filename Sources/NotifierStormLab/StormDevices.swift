import LabSync
import MMUNotifier
import Synchronization

// The storm's in-process devices: each caches translations the way one kind
// of secondary MMU does, so the oracle can ask whether it still holds one an
// ended invalidation made stale.

let stormPageSize: UInt64 = 4096

/// The primary page table of one storm address space, reduced to a version
/// per page: an invalidation bumps the versions of its pages between start
/// and end, as the primary MMU rewrites PTEs between them.
final class StormPrimary: Sendable {
    private final class Page: Sendable { let version = Atomic<UInt64>(1) }
    private let pages: [Page]

    init(pages: Int) { self.pages = (0..<pages).map { _ in Page() } }

    var count: Int { pages.count }
    func version(_ page: Int) -> UInt64 { pages[page].version.load(ordering: .sequentiallyConsistent) }
    func bump(_ page: Int) -> UInt64 { pages[page].version.add(1, ordering: .sequentiallyConsistent).newValue }
}

/// What a storm device must hold at least after an invalidation ended:
/// page -> the version the primary moved to.
typealias MinimumVersions = [Int: UInt64]

protocol CheckedDevice: AnyObject, Sendable {
    var name: String { get }
    /// Pages whose cached translation is older than the primary's.
    func stalePages(_ minimum: MinimumVersions) -> [Int]
}

/// A cache of translations (page -> version) guarded by a spin lock.
final class TranslationCache: @unchecked Sendable {
    // @unchecked: `entries` is only touched with `lock` held.
    private let lock: SpinLock
    private var entries: [Int: UInt64] = [:]

    init(_ name: String, sync: SyncDomain) { lock = SpinLock(name, domain: sync) }

    func withEntries<R>(_ body: (inout [Int: UInt64]) -> R) -> R { lock.withLock { body(&entries) } }

    func zap(_ range: InvalidationRange) {
        withEntries { entries in entries = entries.filter { !range.contains(UInt64($0.key) * stormPageSize) } }
    }

    func stale(_ minimum: MinimumVersions) -> [Int] {
        withEntries { entries in minimum.compactMap { page, v in (entries[page].map { $0 < v } ?? false) ? page : nil } }
    }
}

/// KVM-like: one whole-space subscription; faults are refused while any
/// invalidation it has seen is open (KVM's in-progress count).
final class MirrorSubscriber: AddressSpaceSubscriber, CheckedDevice, @unchecked Sendable {
    // @unchecked: `open` is only touched with `cache`'s lock held.
    let name: String
    var subscriberName: String { name }
    let capabilities: SubscriberCapabilities = [.youngTracking]
    private let cache: TranslationCache
    private var open: [InvalidationRange] = []

    init(_ name: String, sync: SyncDomain) {
        self.name = name
        cache = TranslationCache(name, sync: sync)
    }

    func invalidateRangeStart(_ range: InvalidationRange) -> StartResult {
        cache.withEntries { entries in
            open.append(range)
            entries = entries.filter { !range.contains(UInt64($0.key) * stormPageSize) }
        }
        return .ok
    }

    func invalidateRangeEnd(_ range: InvalidationRange) {
        cache.withEntries { _ in if let i = open.firstIndex(of: range) { open.remove(at: i) } }
    }

    func clearYoung(addressSpace: AddressSpaceID, start: UInt64, end: UInt64) -> Bool {
        cache.withEntries { entries in entries.keys.contains { UInt64($0) * stormPageSize >= start && UInt64($0) * stormPageSize < end } }
    }

    /// Returns whether the translation was installed.
    func fault(_ page: Int, primary: StormPrimary) -> Bool {
        cache.withEntries { entries in
            guard !open.contains(where: { $0.contains(UInt64(page) * stormPageSize) }) else { return false }
            entries[page] = primary.version(page)
            return true
        }
    }

    func stalePages(_ minimum: MinimumVersions) -> [Int] { cache.stale(minimum) }
}

/// GPU-like: an interval subscription per range, faulting with the
/// canonical readBegin / fault / lock / readRetry / install loop.
final class FaultingRange: IntervalInvalidator, CheckedDevice, @unchecked Sendable {
    let name: String
    var intervalName: String { name }
    private let cache: TranslationCache

    init(_ name: String, sync: SyncDomain) {
        self.name = name
        cache = TranslationCache(name, sync: sync)
    }

    func invalidate(_ interval: IntervalNotifier, range: InvalidationRange, currentSeq: UInt64) -> Bool {
        cache.withEntries { entries in
            interval.setSeq(currentSeq)
            entries = entries.filter { !range.contains(UInt64($0.key) * stormPageSize) }
        }
        return true
    }

    /// Faults `page` in; returns the number of retries it took.
    func fault(_ page: Int, interval: IntervalNotifier, primary: StormPrimary) -> Int {
        var retries = 0
        while true {
            let seq = interval.readBegin()
            let version = primary.version(page)
            let installed = cache.withEntries { entries -> Bool in
                guard !interval.readRetry(seq) else { return false }
                entries[page] = version
                return true
            }
            if installed { return retries }
            retries += 1
        }
    }

    func stalePages(_ minimum: MinimumVersions) -> [Int] { cache.stale(minimum) }
}

/// RDMA-like: holds no translations the oracle checks, but keeps its device
/// lock busy with "DMA" and answers retry to a non-blockable start whenever
/// that lock is taken (mlx5 ODP's policy).
final class BusyDevice: AddressSpaceSubscriber, @unchecked Sendable {
    let subscriberName: String
    let dma: SleepingLock

    init(_ name: String, sync: SyncDomain) {
        subscriberName = name
        dma = SleepingLock("\(name) dma", domain: sync)
    }

    func invalidateRangeStart(_ range: InvalidationRange) -> StartResult {
        if range.blockable {
            dma.withLock {}  // wait for in-flight DMA to drain
            return .ok
        }
        guard dma.tryLock() else { return .retry }
        dma.unlock()
        return .ok
    }

    func invalidateRangeEnd(_ range: InvalidationRange) {}
}
