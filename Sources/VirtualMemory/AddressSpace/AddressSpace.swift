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

    public var description: String {
        switch self {
        case .segmentationFault(let a): "segmentation fault at 0x\(String(a, radix: 16))"
        case .protectionFault(let a): "protection fault at 0x\(String(a, radix: 16))"
        case .outOfMemory: "out of memory"
        case .killed: "killed by the OOM killer"
        case .exited: "the address space has exited"
        case .invalidArgument(let why): "invalid argument: \(why)"
        }
    }
}

/// What an invalidation took out of the page table, released only after
/// the secondaries have let go (after the range end).
struct Released {
    var frames: [Int32] = []
    var swapSlots: [Int] = []
    var devicePages: [DevicePage] = []
}

/// One process's virtual memory (Linux: `struct mm_struct`): its VMAs, its
/// page table and its notifier subscriptions.
///
/// Locks, outermost first: `mmapLock` (a sleeping reader-writer lock, like
/// Linux's `mmap_lock`), a frame's lock, an rmap owner's lock, `ptl` (the
/// page-table spin lock, `mm->page_table_lock`), a node's lock.
public final class AddressSpace: @unchecked Sendable, CustomStringConvertible {
    // @unchecked: `vmas`, `cursor` are guarded by `mmapLock`; `pageTable`
    // and `activeRanges` by `ptl`; the rest is atomic or immutable.

    public let id: AddressSpaceID
    /// The secondaries' subscriptions to this address space.
    public let notifiers: AddressSpaceNotifiers
    /// The machine it runs on (held strongly: an address space keeps its
    /// machine alive; the machine lets go of it at exit).
    let machine: Machine
    let mmapLock: SleepingRWLock
    let ptl: SpinLock
    let pageTable = PageTable()
    var vmas: [VMA] = []
    private var cursor: UInt64 = 0x10_0000_0000
    /// Ranges whose invalidation has started and not yet ended: a device
    /// may still reach the old frames there (the DMA check allows it).
    var activeRanges: [InvalidationRange] = []

    enum State: UInt8 { case alive, killed, exited }
    let stateWord = Atomic<UInt8>(State.alive.rawValue)
    /// Pages this address space maps (Linux: RSS).
    public let residentPages = Atomic<Int>(0)

    init(id: AddressSpaceID, machine: Machine) {
        self.id = id
        self.machine = machine
        notifiers = machine.notifierCore.makeAddressSpaceNotifiers(for: id)
        mmapLock = SleepingRWLock("mmap_lock \(id)", domain: machine.sync)
        ptl = SpinLock("page_table_lock \(id)", domain: machine.sync)
    }

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

    // MARK: - The one place the primary MMU invalidates

    /// Invalidates `[start, end)` in the order the contract requires
    /// (seed 003, the TLB analogy): the range start goes to every secondary;
    /// then, under the page-table lock, `update` rewrites each PTE and the
    /// atomic secondary-TLB hook runs; then the TLB flush; then the range
    /// end; and only then are the unmapped frames and swap slots released.
    /// A page is never freed while a secondary may still reach it.
    ///
    /// For a non-blockable range the secondaries may refuse; nothing is
    /// changed then and the caller gets `InvalidationRefused`.
    func invalidate(
        _ start: UInt64, _ end: UInt64, _ event: NotifierEvent, blockable: Bool = true, owner: OwnerCookie? = nil,
        file: StaticString = #fileID, line: UInt = #line,
        _ update: (UInt64, inout PTE, inout Released) -> Void
    ) throws(InvalidationRefused) {
        let range = InvalidationRange(addressSpace: id, start: start, end: end, event: event, blockable: blockable, owner: owner)
        var released = Released()
        if machine.faults.contains(.freeBeforeInvalidate) {
            // Fault injection: clear, free, and only then tell the secondaries.
            rewrite(range, &released, update)
            release(released)
            let active = blockable ? notifiers.startInvalidation(range, file: file, line: line)
                : try notifiers.tryStartInvalidation(range, file: file, line: line)
            active.end()
            return
        }
        if event == .mprotect && machine.faults.contains(.skipMprotectInvalidation) {
            // Fault injection: the PTEs change with no range start or end
            // (only the secondary-TLB hook inside `rewrite` still runs).
            rewrite(range, &released, update)
            release(released)
            return
        }
        ptl.withLock { activeRanges.append(range) }
        let active: ActiveInvalidation
        do {
            active = blockable ? notifiers.startInvalidation(range, file: file, line: line)
                : try notifiers.tryStartInvalidation(range, file: file, line: line)
        } catch {
            ptl.withLock { removeActive(range) }
            throw error
        }
        rewrite(range, &released, update)
        if machine.faults.contains(.skipRangeEnd) {
            _ = consume active  // dropped: the notifier core records it as unpaired
        } else {
            active.end()
        }
        ptl.withLock { removeActive(range) }
        release(released)
    }

    /// `invalidate` for a blockable range, which cannot be refused.
    func invalidateBlocking(
        _ start: UInt64, _ end: UInt64, _ event: NotifierEvent, owner: OwnerCookie? = nil,
        file: StaticString = #fileID, line: UInt = #line,
        _ update: (UInt64, inout PTE, inout Released) -> Void
    ) {
        do {
            try invalidate(start, end, event, blockable: true, owner: owner, file: file, line: line, update)
        } catch {
            preconditionFailure("a blockable invalidation was refused: \(error)")
        }
    }

    private func rewrite(_ range: InvalidationRange, _ released: inout Released, _ update: (UInt64, inout PTE, inout Released) -> Void) {
        ptl.withLock {
            pageTable.forEachEntry(from: range.start >> 12, to: (range.end + 4095) >> 12) { vpn, pte in
                guard !pte.isNone else { return }
                update(vpn << 12, &pte, &released)
            }
            // Under the page-table lock, right after the PTEs changed (seed 002: GRU).
            notifiers.invalidateSecondaryTLBs(range)
        }
    }

    private func removeActive(_ range: InvalidationRange) {
        if let i = activeRanges.firstIndex(of: range) { activeRanges.remove(at: i) }
    }

    /// Puts what an invalidation unmapped, after the secondaries let go.
    /// A swap-cache page nobody maps or swaps to any more leaves the swap
    /// cache too, or it would never be freed.
    func release(_ released: Released) {
        var plain: [Int32] = []
        plain.reserveCapacity(released.frames.count)
        for frame in released.frames {
            let lastMapping = memory.mapcount(of: frame) == 0 && memory.flags(of: frame).contains(.swapCache)
            if lastMapping && memory.tryGet(frame) {
                memory.put(frame)  // the mapping's reference
                machine.dropSwapCacheIfUnused(frame, holding: true)
            } else {
                plain.append(frame)
            }
        }
        memory.put(plain)
        for slot in released.swapSlots {
            if let cached = machine.swap.release(slot), memory.tryGet(cached) {
                machine.dropSwapCacheIfUnused(cached, holding: true)
            }
        }
        for page in released.devicePages { machine.deviceMemory(of: page)!.free(page) }
    }

    /// The common `update` for a zap: the PTE goes away, its dirty bit
    /// moves to the frame, its mapping is dropped (the reference is put
    /// later, by `release`), a swap entry's slot is released.
    func zap(_ pte: inout PTE, _ released: inout Released) {
        if pte.isPresent {
            if pte.isDirty { memory.setFlags(.dirty, on: pte.frame) }
            memory.removeMapping(pte.frame)
            released.frames.append(pte.frame)
            residentPages.subtract(1, ordering: .relaxed)
        } else if pte.isSwap {
            released.swapSlots.append(pte.swapSlot)
        } else if pte.isDevicePrivate {
            released.devicePages.append(pte.devicePage)
        }
        pte = .none
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
            let start = try place(length, at: fixedAddress)
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
    private func place(_ length: UInt64, at fixed: UInt64?) throws(MemoryError) -> UInt64 {
        if let fixed {
            guard fixed % 4096 == 0, fixed + length <= PageTable.limit else { throw .invalidArgument("bad fixed address") }
            guard !vmas.contains(where: { $0.start < fixed + length && fixed < $0.end }) else {
                throw .invalidArgument("0x\(String(fixed, radix: 16)) overlaps an existing mapping")
            }
            return fixed
        }
        var candidate = cursor
        for vma in vmas where vma.end > candidate {
            if vma.start >= candidate + length { break }
            candidate = vma.end
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

    /// Splits VMAs so that `address` is a boundary (mmap lock held exclusively).
    func split(at address: UInt64) {
        guard let vma = vma(containing: address), vma.start != address else { return }
        let tail = VMA(start: address, end: vma.end, protection: vma.protection, kind: vma.kind,
                       pageOffset: vma.index(of: address), region: vma.region, file: vma.file, space: self)
        tail.mergeable = vma.mergeable
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
            invalidateBlocking(start, end, .munmap) { _, pte, released in zap(&pte, &released) }
            for vma in carve(start, end) {
                vmas.removeAll { $0 === vma }
                unlink(vma)
            }
        }
    }

    /// Changes the protection of `[start, start + length)` (Linux: `mprotect`).
    /// Removing write access write-protects the PTEs under an `mprotect`
    /// invalidation; adding it lets the next write fault upgrade them.
    public func protect(start: UInt64, length: UInt64, _ protection: Protection) throws(MemoryError) {
        try checkRange(start, length)
        try mmapLock.withExclusive { () throws(MemoryError) in
            let end = start + length
            guard covered(start, end) else { throw .segmentationFault(start) }
            for vma in carve(start, end) { vma.protection = protection }
            invalidateBlocking(start, end, .mprotect) { _, pte, _ in
                if (pte.isPresent || pte.isDevicePrivate) && !protection.contains(.write) { pte = pte.with(writable: false) }
            }
        }
    }

    /// Whether VMAs cover all of `[start, end)` (mmap lock held).
    func covered(_ start: UInt64, _ end: UInt64) -> Bool {
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
                for (offset, pte) in moved { pageTable.set((newStart + offset) >> 12, pte) }
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
            invalidateBlocking(start, start + length, .madviseDontNeed) { _, pte, released in zap(&pte, &released) }
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
