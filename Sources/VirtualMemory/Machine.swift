public import LabSync
public import MMUNotifier
public import Synchronization

/// Ways to break the primary MMU on purpose, the ways the mailing-list
/// threads behind the contract warn about (docs/CONTRACT.md), so tests can
/// show the checks catch each one. All off by default.
public struct MemoryFaultInjection: OptionSet, Sendable, Hashable {
    public let rawValue: UInt32
    public init(rawValue: UInt32) { self.rawValue = rawValue }

    /// Free the pages before telling the secondaries (the "backwards" order
    /// of Andrea Arcangeli, linux-kernel/kvm-devel, 2008-01-24, "Re:
    /// [kvm-devel] [PATCH] export notifier #1": a secondary may reach a freed
    /// and reused frame).
    public static let freeBeforeInvalidate = MemoryFaultInjection(rawValue: 1 << 0)
    /// Drop a started invalidation without its end.
    public static let skipRangeEnd = MemoryFaultInjection(rawValue: 1 << 1)
    /// Reclaim ignores the secondaries' accessed bits (a page a device uses
    /// hot gets evicted; docs/CONTRACT.md, rule 12).
    public static let skipYoungCheck = MemoryFaultInjection(rawValue: 1 << 2)
    /// Dirty state reported by a secondary is lost (the dirty state must
    /// transfer; docs/CONTRACT.md, rule 15), so a device write can be dropped
    /// with a clean page.
    public static let dropSecondaryDirty = MemoryFaultInjection(rawValue: 1 << 3)
    /// mprotect changes the PTEs without the `mprotect` invalidation's range
    /// start and end: a device keeps a writable translation to a
    /// page the primary made read-only or inaccessible. The kernel-diff
    /// harness catches it against the real kernel's invalidations.
    public static let skipMprotectInvalidation = MemoryFaultInjection(rawValue: 1 << 16)
}

/// When private anonymous memory gets transparent huge pages (Linux:
/// /sys/kernel/mm/transparent_hugepage/enabled).
public enum TransparentHugePages: String, Sendable, Hashable, CaseIterable {
    /// Never (the model's default, as the kernel-diff runner sets it).
    case never
    /// Only where madvise(MADV_HUGEPAGE) asked for them.
    case madvise
    /// Wherever an aligned 2 MiB of a mapping allows, unless MADV_NOHUGEPAGE.
    case always
}

/// The primary MMU: physical memory, swap, files, address spaces, reclaim,
/// migration, KSM and the OOM killer, calling the notifier core in the
/// order the contract requires.
public final class Machine: @unchecked Sendable {
    // @unchecked: `spaces` and `nextSpace` are guarded by `registryLock`;
    // everything else is immutable or synchronises itself.

    public struct Configuration: Sendable, Hashable {
        public var memory: PhysicalMemory.Configuration
        /// Swap slots (pages).
        public var swapSlots: Int
        public var faults: MemoryFaultInjection
        /// Frames a device may take for page-table pages from reclaim context.
        public var devicePageTableReserve: Int
        /// Transparent huge pages for private anonymous memory.
        public var transparentHugePages: TransparentHugePages

        public init(
            memory: PhysicalMemory.Configuration, swapSlots: Int, faults: MemoryFaultInjection = [], devicePageTableReserve: Int = 16,
            transparentHugePages: TransparentHugePages = .never
        ) {
            self.transparentHugePages = transparentHugePages
            self.memory = memory
            self.swapSlots = swapSlots
            self.faults = faults
            self.devicePageTableReserve = devicePageTableReserve
        }
    }

    public let configuration: Configuration
    public let sync: SyncDomain
    public let notifierCore: NotifierCore
    public let memory: PhysicalMemory
    public let swap: SwapArea
    public let shrinkers: ShrinkerRegistry
    public let violations: ReportLog<MemoryViolation>
    public let statistics = MachineStatistics()
    public var faults: MemoryFaultInjection { configuration.faults }
    let owners: OwnerRegistry

    private let registryLock: SpinLock
    /// The live address spaces, by id - 1 (ids are handed out densely from
    /// 1; an exited space's slot is nil): every DMA looks its space up, and
    /// a dictionary's hashing made that half the host's cost of a DMA.
    /// Lock-guarded, so the runtime's exclusivity checks cannot fail.
    @exclusivity(unchecked) private var spaces: [AddressSpace?] = []
    @exclusivity(unchecked) private var nextSpace: UInt64 = 1
    let devicePageTablesInReserve = Atomic<Int>(0)
    let reclaimerBox: SpinLocked<Reclaimer?>
    let ksmBox: SpinLocked<SamePageMerger?>
    /// Every device memory made on this machine, by id - 1 (they live as
    /// long as the machine, as a device's `dev_pagemap` lives as long as the device).
    let deviceMemories: SpinLocked<[DeviceMemory]>

    /// Where a device write to the zero page lands instead (never read).
    let scratchPage: UnsafeMutableRawPointer

    public init(_ configuration: Configuration, notifierCore: NotifierCore = NotifierCore()) {
        scratchPage = .allocate(byteCount: configuration.memory.payloadSize, alignment: 16)
        self.configuration = configuration
        self.notifierCore = notifierCore
        sync = notifierCore.sync
        memory = PhysicalMemory(configuration.memory, sync: sync)
        swap = SwapArea(slots: configuration.swapSlots, payloadSize: configuration.memory.payloadSize, sync: sync)
        shrinkers = ShrinkerRegistry(sync: sync)
        violations = ReportLog(capacity: 1_000)
        owners = OwnerRegistry(sync: sync)
        registryLock = SpinLock("address space registry", domain: sync)
        reclaimerBox = SpinLocked(nil, name: "reclaimer", domain: sync)
        ksmBox = SpinLocked(nil, name: "ksm", domain: sync)
        deviceMemories = SpinLocked([], name: "device memories", domain: sync)
    }

    deinit { scratchPage.deallocate() }

    /// A new, empty address space.
    public func makeAddressSpace() -> AddressSpace {
        registryLock.withLock {
            let id = AddressSpaceID(nextSpace)
            nextSpace += 1
            let space = AddressSpace(id: id, machine: self)
            assert(spaces.count == Int(id.rawValue) - 1, "address space ids are dense")
            spaces.append(space)
            return space
        }
    }

    /// A new in-memory file of `pages` pages, zero-filled, to map shared.
    public func makeFile(named name: String, pages: Int) -> BackingFile {
        precondition(pages > 0 && pages < Int(UInt32.max), "a file needs 1...2^32-1 pages")
        return owners.makeFile(name: name, pages: pages, payloadSize: memory.payloadSize, sync: sync)
    }

    /// Every address space that has not exited.
    public var addressSpaces: [AddressSpace] { registryLock.withLock { spaces.compactMap { $0 } } }

    public func addressSpace(_ id: AddressSpaceID) -> AddressSpace? {
        // Any id may come from a plugin: out of range is simply no space.
        guard id.rawValue >= 1, id.rawValue <= UInt64(Int.max) else { return nil }
        let index = Int(id.rawValue - 1)
        return registryLock.withLock { index < spaces.count ? spaces[index] : nil }
    }

    /// Whether `id` names an address space this machine made (alive or exited).
    public func hasMade(_ id: AddressSpaceID) -> Bool { registryLock.withLock { id.rawValue >= 1 && id.rawValue < nextSpace } }

    func forget(_ space: AddressSpace) {
        registryLock.withLock {
            let index = Int(space.id.rawValue - 1)
            if spaces[index] === space { spaces[index] = nil }
        }
    }

    func record(_ violation: MemoryViolation) { violations.record(violation) }

    /// The shared zero page (see `PhysicalMemory.zeroFrame`).
    public var zeroFrame: Int32 { memory.zeroFrame }

    private let nextDevice = Atomic<UInt64>(1)
    /// Where the collapse daemon's next pass begins (`collapseScan`).
    let collapseCursor = Atomic<Int>(0)

    /// A new identity for a device (a plugin instance, an in-process
    /// mirror): its subscriptions carry it, and its accesses name it, so
    /// each device is held to what its own callbacks acknowledged.
    public func makeDeviceID() -> DeviceID { DeviceID(nextDevice.add(1, ordering: .relaxed).oldValue) }
}

/// Counts of what the machine did, for reports and tests.
public final class MachineStatistics: Sendable {
    public let faults = Atomic<Int>(0)
    public let zeroFills = Atomic<Int>(0)
    public let zeroPageMaps = Atomic<Int>(0)
    public let cowCopies = Atomic<Int>(0)
    public let cowReuses = Atomic<Int>(0)
    public let swapIns = Atomic<Int>(0)
    public let fileReads = Atomic<Int>(0)
    public let evictedAnonymous = Atomic<Int>(0)
    public let evictedFile = Atomic<Int>(0)
    public let writebacks = Atomic<Int>(0)
    public let keptYoung = Atomic<Int>(0)
    public let keptBySecondaryYoung = Atomic<Int>(0)
    public let pinnedSkips = Atomic<Int>(0)
    public let migrations = Atomic<Int>(0)
    public let migrationsRefusedPinned = Atomic<Int>(0)
    public let ksmMerges = Atomic<Int>(0)
    public let ksmBreaks = Atomic<Int>(0)
    public let oomKills = Atomic<Int>(0)
    public let oomReapRetries = Atomic<Int>(0)
    public let oomGiveUps = Atomic<Int>(0)
    public let directReclaims = Atomic<Int>(0)
    public let backgroundReclaims = Atomic<Int>(0)
    /// Pages MADV_FREE marked lazily freed, lazily freed pages reclaim
    /// discarded (clean), and those it found written again and kept.
    public let lazyFreed = Atomic<Int>(0)
    public let lazyFreeDiscards = Atomic<Int>(0)
    public let lazyFreeRedirtied = Atomic<Int>(0)
    /// Pages compaction moved, and pinned pages it passed over untold.
    public let compactions = Atomic<Int>(0)
    public let compactionSkippedPinned = Atomic<Int>(0)
    /// Pages a long-term pin moved out of a movable zone first.
    public let longTermPinMigrations = Atomic<Int>(0)
    /// Pages devices took exclusive, and pages the CPU took back.
    public let exclusiveTaken = Atomic<Int>(0)
    public let exclusiveGivenBack = Atomic<Int>(0)
    /// CPU writes that waited for a userfaultfd monitor.
    public let userfaultWaits = Atomic<Int>(0)
    /// Transparent huge pages: faults that got one, faults that fell back
    /// to small pages, splits, collapses (and collapses passed over because
    /// no page was young), whole-folio migrations.
    public let hugeFaults = Atomic<Int>(0)
    public let hugeFallbacks = Atomic<Int>(0)
    public let hugeSplits = Atomic<Int>(0)
    public let hugeCollapses = Atomic<Int>(0)
    public let hugeCollapsesCold = Atomic<Int>(0)
    public let hugeMigrations = Atomic<Int>(0)

    init() {}

    /// Name and value of every counter.
    public var all: [(String, Int)] {
        func v(_ counter: borrowing Atomic<Int>) -> Int { counter.load(ordering: .relaxed) }
        return [
            ("faults", v(faults)), ("zero fills", v(zeroFills)), ("zero-page maps", v(zeroPageMaps)), ("COW copies", v(cowCopies)), ("COW reuses", v(cowReuses)),
            ("swap-ins", v(swapIns)), ("file reads", v(fileReads)), ("evicted anonymous", v(evictedAnonymous)),
            ("evicted file", v(evictedFile)), ("writebacks", v(writebacks)), ("kept young (CPU)", v(keptYoung)),
            ("kept young (device)", v(keptBySecondaryYoung)), ("pinned skips", v(pinnedSkips)), ("migrations", v(migrations)),
            ("migrations refused (pinned)", v(migrationsRefusedPinned)), ("KSM merges", v(ksmMerges)), ("KSM breaks", v(ksmBreaks)),
            ("OOM kills", v(oomKills)), ("OOM reap retries", v(oomReapRetries)), ("OOM give-ups", v(oomGiveUps)),
            ("direct reclaims", v(directReclaims)), ("background reclaims", v(backgroundReclaims)),
            ("lazily freed", v(lazyFreed)), ("lazy-free discards", v(lazyFreeDiscards)), ("lazy-free redirtied", v(lazyFreeRedirtied)),
            ("compactions", v(compactions)), ("compaction skipped (pinned)", v(compactionSkippedPinned)),
            ("long-term pin migrations", v(longTermPinMigrations)), ("exclusive taken", v(exclusiveTaken)),
            ("exclusive given back", v(exclusiveGivenBack)), ("userfault waits", v(userfaultWaits)),
            ("THP faults", v(hugeFaults)), ("THP fallbacks", v(hugeFallbacks)), ("THP splits", v(hugeSplits)),
            ("THP collapses", v(hugeCollapses)), ("THP collapses skipped (cold)", v(hugeCollapsesCold)), ("THP migrations", v(hugeMigrations)),
        ]
    }
}
