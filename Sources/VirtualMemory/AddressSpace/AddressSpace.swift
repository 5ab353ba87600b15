import LabSync
public import MMUNotifier
public import Synchronization

/// Why a memory operation failed.
public enum MemoryError: Error, Sendable, Hashable, CustomStringConvertible {
    /// No mapping covers the address (SIGSEGV).
    case segmentationFault(UInt64)
    /// The mapping does not allow the access (SIGSEGV, protection).
    case protectionFault(UInt64)
    /// No memory could be had, even after reclaim and the OOM killer.
    case outOfMemory
    /// The OOM killer chose this address space; it must exit.
    case killed
    /// The address space has exited.
    case exited
    /// An argument is out of range or misaligned.
    case invalidArgument(String)
    /// The page kept changing under the operation, which gave up after a
    /// bounded number of tries where Linux would keep trying: nobody's
    /// mistake, try again later.
    case busy(String)

    public var description: String {
        switch self {
        case .segmentationFault(let a): "segmentation fault at 0x\(String(a, radix: 16))"
        case .protectionFault(let a): "protection fault at 0x\(String(a, radix: 16))"
        case .outOfMemory: "out of memory"
        case .killed: "killed by the OOM killer"
        case .exited: "the address space has exited"
        case .invalidArgument(let why): "invalid argument: \(why)"
        case .busy(let why): "busy: \(why)"
        }
    }
}

/// One process's virtual memory (Linux: `struct mm_struct`): its VMAs, its
/// page table and its notifier subscriptions.
///
/// Locks, outermost first: `mmapLock` (a sleeping reader-writer lock, like
/// Linux's `mmap_lock`), a frame's lock, an rmap owner's lock, `youngLock`
/// (reclaim's young checks only), `ptl` (the page-table spin lock,
/// `mm->page_table_lock`), a node's lock.
public final class AddressSpace: @unchecked Sendable, CustomStringConvertible {
    // @unchecked: `vmas`, `cursor` are guarded by `mmapLock`; `pageTable`
    // and `inFlight` by `ptl`; the rest is atomic or immutable.

    public let id: AddressSpaceID
    /// The secondaries' subscriptions to this address space.
    public let notifiers: AddressSpaceNotifiers
    /// The machine it runs on (held strongly: an address space keeps its
    /// machine alive; the machine lets go of it at exit).
    let machine: Machine
    let mmapLock: SleepingRWLock
    let ptl: SpinLock
    /// Held by reclaim's young check of a mapping from its look at the PTE
    /// until every secondary has answered `clearYoung`: the part Linux's
    /// page-table lock plays in `folio_referenced_one`, which holds it across
    /// `ptep_clear_flush_young_notify`, so two checks of one page never
    /// overlap (nor would one check's answer be taken from another's). The
    /// model cannot hold `ptl` there: its check of every device access takes
    /// `ptl`, and a secondary's young check may wait for that access (KVM's
    /// flush waits for the vCPUs in guest mode). Nothing but young checks
    /// takes this lock, and nothing is taken under it but `ptl` and what the
    /// secondaries' `clearYoung` takes.
    let youngLock: SpinLock
    let pageTable = PageTable()
    var vmas: [VMA] = []
    private var cursor: UInt64 = 0x10_0000_0000
    /// Invalidations between their start and their end, with what each
    /// device acknowledged (guarded by `ptl`): what the device-access check
    /// holds each device to. Lock-guarded, so the runtime's exclusivity
    /// checks cannot fail (two sat on every invalidation).
    @exclusivity(unchecked) var inFlight: [InFlightInvalidation] = []
    /// Which device holds each device-exclusive PTE, by virtual page
    /// (guarded by `ptl`). Read only where the PTE has the bit, so an entry
    /// left behind after the PTE went (a zap, reclaim) is never believed;
    /// `makeExclusive` overwrites it, a restore removes it.
    var exclusiveHolders: [UInt64: DeviceID] = [:]
    /// userfaultfd: the pages CPU writes wait on, for the monitor; the
    /// queue the writers wait in; and a count of resolutions (unprotects).
    let userfaultQueue: SpinLocked<[UInt64]>
    let userfaultWaits: WaitQueue
    let userfaultResolutions = Atomic<UInt64>(0)

    enum State: UInt8 { case alive, killed, exited }
    let stateWord = Atomic<UInt8>(State.alive.rawValue)
    /// Pages this address space maps (Linux: RSS).
    public let residentPages = Atomic<Int>(0)

    init(id: AddressSpaceID, machine: Machine) {
        self.id = id
        self.machine = machine
        notifiers = machine.notifierCore.makeAddressSpaceNotifiers(for: id)
        mmapLock = SleepingRWLock("mmap_lock \(id)", domain: machine.sync, orderClass: "mmap_lock")
        ptl = SpinLock("page_table_lock \(id)", domain: machine.sync, orderClass: "page_table_lock")
        youngLock = SpinLock("young check \(id)", domain: machine.sync, orderClass: "young check")
        userfaultQueue = SpinLocked([], name: "userfaults \(id)", domain: machine.sync)
        userfaultWaits = WaitQueue("userfault waits \(id)", domain: machine.sync)
    }

    /// Virtual addresses of the model stay below this (2^44).
    public static let addressLimit: UInt64 = PageTable.limit

    var state: State { State(rawValue: stateWord.load(ordering: .acquiring))! }
    var memory: PhysicalMemory { machine.memory }

    /// Whether the OOM killer chose this address space.
    public var isKilled: Bool { state == .killed }
    public var hasExited: Bool { state == .exited }

    public var description: String { "\(id)" }

    func checkAlive() throws(MemoryError) {
        switch state {
        case .alive: return
        case .killed: throw .killed
        case .exited: throw .exited
        }
    }

    /// The VMA covering `address` (mmap lock held).
    func vma(containing address: UInt64) -> VMA? {
        var low = 0
        var high = vmas.count
        while low < high {
            let mid = (low + high) / 2
            if vmas[mid].end <= address { low = mid + 1 } else { high = mid }
        }
        return low < vmas.count && vmas[low].contains(address) ? vmas[low] : nil
    }

    /// The current mappings, for reports and tests.
    public var mappings: [(start: UInt64, end: UInt64, protection: Protection, kind: MappingKind)] {
        mmapLock.withShared { vmas.map { ($0.start, $0.end, $0.protection, $0.kind) } }
    }

    /// The primary PTE for `address` right now.
    public func translate(_ address: UInt64) -> PTE {
        ptl.withLock { pageTable.entry(address >> 12) }
    }

    // MARK: - Mapping

    /// Maps `length` bytes (Linux: `mmap`) and returns the address. For
    /// `.fileShared`, `file` and `fileOffset` (bytes, page aligned) say what.
    public func map(
        length: UInt64, kind: MappingKind, protection: Protection = .readWrite,
        file: BackingFile? = nil, fileOffset: UInt64 = 0, at fixedAddress: UInt64? = nil
    ) throws(MemoryError) -> UInt64 {
        try checkAlive()
        guard length > 0, length % 4096 == 0 else { throw .invalidArgument("length \(length) must be a positive multiple of 4096") }
        guard fileOffset % 4096 == 0 else { throw .invalidArgument("file offset must be page aligned") }
        if kind == .fileShared {
            guard let file else { throw .invalidArgument("a file mapping needs a file") }
            guard Int(fileOffset / 4096 + length / 4096) <= file.pages else {
                throw .invalidArgument("the mapping runs past the end of \(file.name) (\(file.pages) pages)")
            }
        }
        return try mmapLock.withExclusive { () throws(MemoryError) -> UInt64 in
            // Private anonymous memory of 2 MiB or more starts on a 2 MiB
            // boundary when huge pages may be used (Linux: thp_get_unmapped_area).
            let alignHuge = kind == .anonymousPrivate && length >= Self.hugeSize && machine.configuration.transparentHugePages != .never
            let start = try place(length, at: fixedAddress, alignHuge: alignHuge)
            let region = kind == .anonymousPrivate ? machine.owners.makeRegion(sync: machine.sync) : nil
            let backing: BackingFile? = switch kind {
            case .anonymousPrivate: nil
            case .anonymousShared: machine.makeFile(named: "shmem \(id) 0x\(String(start, radix: 16))", pages: Int(length / 4096))
            case .fileShared: file
            }
            let pageOffset = kind == .fileShared ? UInt32(fileOffset / 4096) : (kind == .anonymousPrivate ? UInt32(truncatingIfNeeded: start >> 12) : 0)
            let vma = VMA(start: start, end: start + length, protection: protection, kind: kind, pageOffset: pageOffset,
                          region: region, file: backing, space: self)
            link(vma)
            insertSorted(vma)
            return start
        }
    }

    /// Finds room for `length` bytes (mmap lock held exclusively).
    private func place(_ length: UInt64, at fixed: UInt64?, alignHuge: Bool = false) throws(MemoryError) -> UInt64 {
        mmapLock.assertHeldExclusive()
        if let fixed {
            guard fixed % 4096 == 0, fixed + length <= PageTable.limit else { throw .invalidArgument("bad fixed address") }
            guard !vmas.contains(where: { $0.start < fixed + length && fixed < $0.end }) else {
                throw .invalidArgument("0x\(String(fixed, radix: 16)) overlaps an existing mapping")
            }
            return fixed
        }
        func aligned(_ address: UInt64) -> UInt64 { alignHuge ? (address + Self.hugeSize - 1) & ~(Self.hugeSize - 1) : address }
        var candidate = aligned(cursor)
        for vma in vmas where vma.end > candidate {
            if vma.start >= candidate + length { break }
            candidate = aligned(vma.end)
        }
        guard candidate + length <= PageTable.limit else { throw .outOfMemory }
        cursor = candidate + length + 4096  // leave a guard gap
        return candidate
    }

    private func insertSorted(_ vma: VMA) {
        let index = vmas.firstIndex { $0.start > vma.start } ?? vmas.count
        vmas.insert(vma, at: index)
    }

    /// Adds a VMA to its rmap owner's list.
    func link(_ vma: VMA) {
        if let region = vma.region {
            region.lock.withExclusive { region.vmas.append(vma) }
        } else if let file = vma.file {
            file.mappingLock.withExclusive { file.vmas.append(vma) }
        }
    }

    /// Removes a VMA from its rmap owner's list; retires an empty region.
    func unlink(_ vma: VMA) {
        if let region = vma.region {
            let empty = region.lock.withExclusive { () -> Bool in
                region.vmas.removeAll { $0 === vma }
                return region.vmas.isEmpty
            }
            if empty { machine.owners.retire(region) }
        } else if let file = vma.file {
            file.mappingLock.withExclusive { file.vmas.removeAll { $0 === vma } }
        }
    }

    /// Runs `body` with the VMA's rmap owner locked exclusively, so its
    /// bounds may change under a concurrent rmap walk.
    func adjusting(_ vma: VMA, _ body: () -> Void) {
        if let region = vma.region {
            region.lock.withExclusive(body)
        } else if let file = vma.file {
            file.mappingLock.withExclusive(body)
        } else {
            body()
        }
    }

    /// Splits VMAs so that `address` is a boundary (mmap lock held
    /// exclusively). A huge page across the new boundary is split first
    /// (Linux: `vma_adjust_trans_huge`), so no huge page straddles VMAs.
    func split(at address: UInt64) {
        mmapLock.assertHeldExclusive()
        guard let vma = vma(containing: address), vma.start != address else { return }
        if address % Self.hugeSize != 0 { splitHugePages(address, address + 1, partialOnly: false) }
        let tail = VMA(start: address, end: vma.end, protection: vma.protection, kind: vma.kind,
                       pageOffset: vma.index(of: address), region: vma.region, file: vma.file, space: self)
        tail.mergeable = vma.mergeable
        tail.userfaultWP = vma.userfaultWP
        tail.hugePage = vma.hugePage
        tail.noHugePage = vma.noHugePage
        adjusting(vma) {
            vma.end = address
            if let region = tail.region { region.vmas.append(tail) } else if let file = tail.file { file.vmas.append(tail) }
        }
        insertSorted(tail)
    }

    /// The VMAs inside `[start, end)` after splitting at both ends.
    func carve(_ start: UInt64, _ end: UInt64) -> [VMA] {
        split(at: start)
        split(at: end)
        return vmas.filter { $0.start >= start && $0.end <= end }
    }

    /// The address space whose mmap lock the current thread holds shared
    /// while it runs a device memory's migrate_to_ram (`handleFault`).
    @TaskLocal static var mmapReadHeld: ObjectIdentifier? = nil

    /// `body` under the mmap lock held shared, unless the current thread
    /// already holds it so, in a migrate_to_ram callback: a second shared
    /// acquisition would deadlock behind a waiting writer (Linux's
    /// migrate_to_ram runs with mmap_read_lock held and takes it no more).
    func withMmapShared<R, E: Error>(_ body: () throws(E) -> R) throws(E) -> R {
        if Self.mmapReadHeld == ObjectIdentifier(self) { return try body() }
        return try mmapLock.withShared(body)
    }

    func checkRange(_ start: UInt64, _ length: UInt64) throws(MemoryError) {
        guard start % 4096 == 0, length > 0, length % 4096 == 0, start + length <= PageTable.limit else {
            throw .invalidArgument("range 0x\(String(start, radix: 16)) + \(length) must be page aligned and inside the address space")
        }
    }

    /// Unmaps `[start, start + length)` (Linux: `munmap`).
    public func unmap(start: UInt64, length: UInt64) throws(MemoryError) {
        try checkRange(start, length)
        mmapLock.withExclusive {
            let end = start + length
            splitHugePages(start, end, partialOnly: true)  // a huge page unmapped in part is split first
            invalidateBlocking(start, end, .munmap, flush: .gathered) { _, pte, released in zap(&pte, &released) }
            for vma in carve(start, end) {
                vmas.removeAll { $0 === vma }
                unlink(vma)
            }
        }
    }

    /// Changes the protection of `[start, start + length)` (Linux: `mprotect`)
    /// under an `mprotect` invalidation. Removing write access
    /// write-protects the PTEs (migration entries and device-private
    /// entries too, so the mapping comes back read-only); `.none` makes
    /// present PTEs PROT_NONE (mapped, but no access for the CPU or a
    /// device); adding access back clears PROT_NONE, and a write fault
    /// upgrades to writable.
    public func protect(start: UInt64, length: UInt64, _ protection: Protection) throws(MemoryError) {
        try checkRange(start, length)
        try mmapLock.withExclusive { () throws(MemoryError) in
            let end = start + length
            guard covered(start, end) else { throw .segmentationFault(start) }
            for vma in carve(start, end) { vma.protection = protection }
            let none = protection.isEmpty
            let readOnly = !protection.contains(.write)
            invalidateBlocking(start, end, .mprotect) { _, pte, _ in
                if pte.isPresent {
                    pte = (readOnly ? pte.with(writable: false) : pte).with(protNone: none)
                } else if pte.isMigration {
                    pte = .migration(frame: pte.frame, writable: pte.isWritable && !readOnly, protNone: none, uffdWP: pte.isUffdWP)
                } else if pte.isDevicePrivate && readOnly {
                    pte = pte.with(writable: false)
                }
            }
        }
    }

    /// Whether VMAs cover all of `[start, end)` (mmap lock held).
    func covered(_ start: UInt64, _ end: UInt64) -> Bool {
        mmapLock.assertHeld()
        var at = start
        for vma in vmas where vma.end > at && vma.start < end {
            if vma.start > at { return false }
            at = vma.end
            if at >= end { return true }
        }
        return at >= end
    }

    /// Moves `[oldStart, oldStart + length)` to `newStart` (Linux: `mremap`
    /// with `MREMAP_FIXED`). The pages keep their frames; secondaries get an
    /// `mremap` invalidation of the old range.
    public func remap(from oldStart: UInt64, length: UInt64, to newStart: UInt64) throws(MemoryError) {
        try checkRange(oldStart, length)
        try checkRange(newStart, length)
        try mmapLock.withExclusive { () throws(MemoryError) in
            let oldEnd = oldStart + length
            guard let source = vma(containing: oldStart), source.end >= oldEnd else {
                throw .invalidArgument("mremap needs one mapping covering the whole source range")
            }
            guard !vmas.contains(where: { $0.start < newStart + length && newStart < $0.end }) else {
                throw .invalidArgument("the target range overlaps a mapping")
            }
            // Huge pages move whole (Linux: move_huge_pmd) only to the same
            // place in a 2 MiB: otherwise, and at a partial edge, they split.
            splitHugePages(oldStart, oldEnd, partialOnly: newStart % Self.hugeSize == oldStart % Self.hugeSize)
            var moved: [(UInt64, PTE)] = []
            invalidateBlocking(oldStart, oldEnd, .mremap) { address, pte, _ in
                moved.append((address - oldStart, pte))
                pte = .none
            }
            let piece = carve(oldStart, oldEnd)
            precondition(piece.count == 1, "mremap source splits into one VMA")
            let vma = piece[0]
            vmas.removeAll { $0 === vma }
            adjusting(vma) {
                vma.start = newStart
                vma.end = newStart + length
            }
            insertSorted(vma)
            ptl.withLock {
                for (offset, pte) in moved {
                    pageTable.set((newStart + offset) >> 12, pte)
                    // A device-exclusive entry keeps its holder at its new place.
                    if pte.isDeviceExclusive, let holder = exclusiveHolders.removeValue(forKey: (oldStart + offset) >> 12) {
                        exclusiveHolders[(newStart + offset) >> 12] = holder
                    }
                }
            }
            // A device page's reverse map follows its mapping.
            for (offset, pte) in moved where pte.isDevicePrivate {
                machine.deviceMemory(of: pte.devicePage)!.setMapping(pte.devicePage, space: id, address: newStart + offset)
            }
        }
    }

    /// Drops the pages of `[start, start + length)` (Linux: `MADV_DONTNEED`):
    /// anonymous memory reads back as zeroes, shared memory from its file.
    public func adviseDontNeed(start: UInt64, length: UInt64) throws(MemoryError) {
        try checkRange(start, length)
        mmapLock.withShared {
            splitHugePages(start, start + length, partialOnly: true)
            invalidateBlocking(start, start + length, .madviseDontNeed, flush: .gathered) { _, pte, released in zap(&pte, &released) }
        }
    }

    /// Marks `[start, start + length)` for KSM (Linux: `MADV_MERGEABLE`).
    public func adviseMergeable(start: UInt64, length: UInt64) throws(MemoryError) {
        try checkRange(start, length)
        mmapLock.withExclusive {
            for vma in carve(start, start + length) where vma.kind == .anonymousPrivate { vma.mergeable = true }
        }
    }
}
