import LabSync
public import MMUNotifier
public import Synchronization

/// A page of device memory: which device memory, and which page in it.
public struct DevicePage: RawRepresentable, Sendable, Hashable, Comparable, CustomStringConvertible {
    /// Memory id in bits 32..., the page's index below.
    public let rawValue: UInt64
    public init(rawValue: UInt64) { self.rawValue = rawValue }
    init(memory: Int, index: Int) { rawValue = UInt64(memory) << 32 | UInt64(UInt32(index)) }

    public var memoryID: Int { Int(rawValue >> 32) }
    public var index: Int { Int(rawValue & 0xffff_ffff) }
    public static func < (a: Self, b: Self) -> Bool { a.rawValue < b.rawValue }
    public var description: String { "devmem\(memoryID):\(index)" }
}

/// Device-private memory (Linux: a `dev_pagemap` of type
/// `MEMORY_DEVICE_PRIVATE`, the VRAM of a GPU that mirrors a process):
/// pages the CPU cannot reach. A page of an address space can move here
/// (`Machine.migrateToDevice`); its PTE then becomes a device-private entry,
/// a CPU access to it faults and brings the page home
/// (`Machine.migrateToHost`), and the device that owns the memory keeps
/// using it directly.
///
/// The lab keeps the pages' contents here, in the host, so every device
/// access to them is checked as system-memory DMA is: a device that reads a
/// device page after it went home, or after it was freed and reused, is
/// caught. The owning device decides what goes where and when to evict
/// (`Machine.evictDeviceMemory`); the pool only hands out pages.
///
/// Guarantees: a page has at most one mapping (an address of one address
/// space, the reverse map eviction uses); a page's generation changes when
/// it is freed; a page is freed only after the invalidation that unmapped
/// it has ended, as system frames are.
public final class DeviceMemory: @unchecked Sendable, CustomStringConvertible {
    // @unchecked: the page arrays are guarded by `lock`; payloads are
    // reached under the owning address space's page-table lock.

    /// 1-based; 0 is never a device memory.
    public let id: Int
    public let name: String
    /// The migration owner this memory's migrations announce (Linux: the
    /// `pgmap->owner` passed as `migrate_vma.pgmap_owner`), so the owning
    /// device can tell its own migrations from everyone else's.
    public let owner: OwnerCookie
    public let capacity: Int
    let payloadSize: Int
    private let payloads: UnsafeMutableRawPointer
    private let lock: SpinLock
    private var freeList: [Int32]
    private var allocated: [Bool]
    private var generations: [UInt32]
    /// The address each page is mapped at, or nil while free.
    private var mappings: [(space: AddressSpaceID, address: UInt64)?]
    /// When each page was allocated (eviction takes the oldest first).
    private var stamps: [UInt64]
    private var clock: UInt64 = 0

    /// The owner's migrate_to_ram (Linux: `pgmap->ops->migrate_to_ram`):
    /// called on a CPU fault of one of these pages, mmap lock held shared,
    /// before the primary brings the page home itself. Nil: none.
    private let migrateToRAMHandler: SpinLocked<(@Sendable (AddressSpace, UInt64) -> Void)?>

    /// Sets (or, with nil, clears) the handler a CPU fault on one of these
    /// pages calls first (see `migrateToRAM`).
    public func setMigrateToRAM(_ handler: (@Sendable (AddressSpace, UInt64) -> Void)?) {
        migrateToRAMHandler.withLock { $0 = handler }
    }

    var migrateToRAM: (@Sendable (AddressSpace, UInt64) -> Void)? { migrateToRAMHandler.withLock { $0 } }

    public let migratedToDevice = Atomic<Int>(0)
    public let migratedToHost = Atomic<Int>(0)
    public let evicted = Atomic<Int>(0)

    init(id: Int, name: String, owner: OwnerCookie, pages: Int, payloadSize: Int, sync: SyncDomain) {
        precondition(pages > 0 && pages < Int(Int32.max), "a device memory needs 1...2^31-1 pages")
        self.id = id
        self.name = name
        self.owner = owner
        capacity = pages
        self.payloadSize = payloadSize
        payloads = .allocate(byteCount: pages * payloadSize, alignment: 16)
        payloads.initializeMemory(as: UInt8.self, repeating: 0, count: pages * payloadSize)
        lock = SpinLock("device memory \(name)", domain: sync)
        migrateToRAMHandler = SpinLocked(nil, name: "device memory \(name) migrate_to_ram", domain: sync)
        freeList = (0..<Int32(pages)).reversed().map { $0 }
        allocated = Array(repeating: false, count: pages)
        generations = Array(repeating: 0, count: pages)
        mappings = Array(repeating: nil, count: pages)
        stamps = Array(repeating: 0, count: pages)
    }

    deinit { payloads.deallocate() }

    public var description: String { "\(name) (\(usedPages)/\(capacity) pages used)" }

    /// Pages in use.
    public var usedPages: Int { lock.withLock { capacity - freeList.count } }

    /// Up to `count` free pages (fewer when the memory is nearly full).
    func allocate(_ count: Int) -> [DevicePage] {
        lock.withLock {
            let taken = min(count, freeList.count)
            var pages: [DevicePage] = []
            pages.reserveCapacity(taken)
            for _ in 0..<taken {
                let index = Int(freeList.removeLast())
                clock += 1
                stamps[index] = clock
                allocated[index] = true
                pages.append(DevicePage(memory: id, index: index))
            }
            return pages
        }
    }

    /// Returns a page: its generation changes, so a device still holding it is caught.
    func free(_ page: DevicePage) {
        precondition(page.memoryID == id, "\(page) is not a page of \(name)")
        lock.withLock {
            precondition(allocated[page.index], "double free of \(page)")
            allocated[page.index] = false
            generations[page.index] &+= 1
            mappings[page.index] = nil
            freeList.append(Int32(page.index))
        }
    }

    func setMapping(_ page: DevicePage, space: AddressSpaceID, address: UInt64) {
        lock.withLock { mappings[page.index] = (space, address) }
    }

    /// Where a page is mapped (the reverse map), nil if free.
    public func mapping(of page: DevicePage) -> (space: AddressSpaceID, address: UInt64)? {
        lock.withLock { mappings[page.index] }
    }

    public func generation(of page: DevicePage) -> UInt32 { lock.withLock { generations[page.index] } }

    /// The `count` pages allocated longest ago that are mapped.
    func oldestMapped(_ count: Int) -> [(page: DevicePage, space: AddressSpaceID, address: UInt64)] {
        lock.withLock {
            let used = (0..<capacity).filter { mappings[$0] != nil }.sorted { stamps[$0] < stamps[$1] }
            return used.prefix(count).map { (DevicePage(memory: id, index: $0), mappings[$0]!.space, mappings[$0]!.address) }
        }
    }

    /// The page's contents (reach it only under the mapping space's page-table lock).
    func payload(of page: DevicePage) -> UnsafeMutableRawBufferPointer {
        UnsafeMutableRawBufferPointer(start: payloads + page.index * payloadSize, count: payloadSize)
    }
}

extension Machine {
    /// Makes `pages` pages of device-private memory for the device that
    /// migrates as `owner`.
    public func makeDeviceMemory(name: String, pages: Int, owner: OwnerCookie) -> DeviceMemory {
        deviceMemories.withLock { list in
            let memory = DeviceMemory(
                id: list.count + 1, name: name, owner: owner, pages: pages, payloadSize: memory.payloadSize, sync: sync)
            list.append(memory)
            return memory
        }
    }

    /// Whether any device memory was made (fork skips its walk for device pages when not).
    var hasDeviceMemory: Bool { deviceMemories.withLock { !$0.isEmpty } }

    /// The device memory a page belongs to.
    public func deviceMemory(of page: DevicePage) -> DeviceMemory? {
        deviceMemories.withLock { list in page.memoryID >= 1 && page.memoryID <= list.count ? list[page.memoryID - 1] : nil }
    }
}
