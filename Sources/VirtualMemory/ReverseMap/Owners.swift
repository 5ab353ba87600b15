import Synchronization
import LabSync

/// The reverse-map owner of anonymous pages (Linux: `struct anon_vma`):
/// the VMAs that may map pages faulted in one anonymous mapping, its forked
/// copies included. A frame records its owner and its page index; an rmap
/// walk visits every VMA here and checks whether that VMA's PTE at the
/// page's address really maps the frame.
///
/// Linux gives each child its own anon_vma chained to the parent's; here a
/// fork family shares one, so walks may visit a VMA that never mapped the
/// page. The PTE check makes that harmless; it costs a little time only.
final class AnonymousRegion: @unchecked Sendable {
    // @unchecked: `vmas` is guarded by `lock`.
    let id: UInt32
    /// Linux: `anon_vma->root->rwsem`. Shared by rmap walks, exclusive to link/unlink.
    let lock: SleepingRWLock
    /// Lock-guarded, so the runtime's exclusivity checks cannot fail (and
    /// they sat on every rmap walk).
    @exclusivity(unchecked) var vmas: [VMA] = []
    /// Whether an anonymous page was ever installed in its mappings (Linux:
    /// the VMA has an `anon_vma`; a zero-page read makes none). fork copies
    /// nothing of a mapping without (`vma_needs_copy`).
    let hasPages = Atomic<Bool>(false)

    init(id: UInt32, sync: SyncDomain) {
        self.id = id
        lock = SleepingRWLock("anon region \(id)", domain: sync, orderClass: "anon_vma")
    }
}

/// An in-memory file that shared mappings map, with its page cache
/// (Linux: an inode, its `address_space` and `i_mmap`). `MAP_SHARED |
/// MAP_ANONYMOUS` memory is modelled as an unnamed file, as Linux's shmem is.
public final class BackingFile: @unchecked Sendable {
    // @unchecked: `stored` and `pageCache` are guarded by `cacheLock`,
    // `vmas` by `mappingLock`.
    let id: UInt32
    public let name: String
    public let pages: Int
    let payloadSize: Int
    /// Linux: `i_mmap_rwsem`.
    let mappingLock: SleepingRWLock
    /// Linux: the page cache's `i_pages` lock.
    let cacheLock: SpinLock
    /// Lock-guarded, so the runtime's exclusivity checks cannot fail.
    @exclusivity(unchecked) var vmas: [VMA] = []
    private var stored: UnsafeMutableRawPointer
    var pageCache: [UInt32: Int32] = [:]
    /// Pages written back to the store, and pages read from it.
    var writebacks = 0
    var reads = 0

    init(id: UInt32, name: String, pages: Int, payloadSize: Int, sync: SyncDomain) {
        self.id = id
        self.name = name
        self.pages = pages
        self.payloadSize = payloadSize
        mappingLock = SleepingRWLock("file \(name) i_mmap", domain: sync, orderClass: "i_mmap_rwsem")
        cacheLock = SpinLock("file \(name) page cache", domain: sync)
        stored = .allocate(byteCount: max(pages, 1) * payloadSize, alignment: 16)
        stored.initializeMemory(as: UInt8.self, repeating: 0, count: max(pages, 1) * payloadSize)
    }

    deinit { stored.deallocate() }

    /// The stored ("on disk") contents of page `index`. Guarded by `cacheLock`
    /// or by owning the page's frame lock while it is being read or written.
    func storedPage(_ index: UInt32) -> UnsafeMutableRawBufferPointer {
        UnsafeMutableRawBufferPointer(start: stored + Int(index) * payloadSize, count: payloadSize)
    }

    /// Pages of the file in the page cache now.
    public var cachedPages: Int { cacheLock.withLock { pageCache.count } }

    /// A copy of what the file holds on "disk" at page `index` (tests, the oracle).
    public func storedBytes(at index: Int) -> [UInt8] {
        cacheLock.withLock { Array(storedPage(UInt32(index))) }
    }
}

/// Maps owner ids (stored in frame metadata) to their objects.
/// Bit 31 set: a file; clear: an anonymous region. Id 0 means "none".
final class OwnerRegistry: @unchecked Sendable {
    // @unchecked: all state is guarded by `lock`.
    static let fileBit: UInt32 = 1 << 31
    private let lock: SpinLock
    private var regions: [AnonymousRegion?] = [nil]
    private var files: [BackingFile?] = [nil]
    private var freeRegionIDs: [UInt32] = []

    init(sync: SyncDomain) { lock = SpinLock("owner registry", domain: sync) }

    func makeRegion(sync: SyncDomain) -> AnonymousRegion {
        lock.withLock {
            let id: UInt32
            if let reused = freeRegionIDs.popLast() {
                id = reused
            } else {
                id = UInt32(regions.count)
                regions.append(nil)
            }
            let region = AnonymousRegion(id: id, sync: sync)
            regions[Int(id)] = region
            return region
        }
    }

    /// Forgets a region no VMA uses any more.
    func retire(_ region: AnonymousRegion) {
        lock.withLock {
            regions[Int(region.id)] = nil
            freeRegionIDs.append(region.id)
        }
    }

    func makeFile(name: String, pages: Int, payloadSize: Int, sync: SyncDomain) -> BackingFile {
        lock.withLock {
            let id = UInt32(files.count) | Self.fileBit
            let file = BackingFile(id: id, name: name, pages: pages, payloadSize: payloadSize, sync: sync)
            files.append(file)
            return file
        }
    }

    func region(_ id: UInt32) -> AnonymousRegion? {
        lock.withLock { id & Self.fileBit == 0 && Int(id) < regions.count ? regions[Int(id)] : nil }
    }

    func file(_ id: UInt32) -> BackingFile? {
        lock.withLock {
            guard id & Self.fileBit != 0 else { return nil }
            let index = Int(id & ~Self.fileBit)
            return index < files.count ? files[index] : nil
        }
    }
}
