/// What backs a mapping.
public enum MappingKind: Sendable, Hashable, CustomStringConvertible {
    /// `MAP_PRIVATE | MAP_ANONYMOUS`: zero-filled, copy-on-write after fork, swap-backed.
    case anonymousPrivate
    /// `MAP_SHARED | MAP_ANONYMOUS`: shared with forked children; modelled as an unnamed file (shmem).
    case anonymousShared
    /// `MAP_SHARED` of a backing file: the page cache, written back when dirty.
    case fileShared

    public var description: String {
        switch self {
        case .anonymousPrivate: "anonymous private"
        case .anonymousShared: "anonymous shared"
        case .fileShared: "file shared"
        }
    }
}

/// Access rights of a mapping (`PROT_READ`, `PROT_WRITE`).
public struct Protection: OptionSet, Sendable, Hashable, CustomStringConvertible {
    public let rawValue: UInt8
    public init(rawValue: UInt8) { self.rawValue = rawValue }
    public static let read = Protection(rawValue: 1)
    public static let write = Protection(rawValue: 2)
    public static let readWrite: Protection = [.read, .write]
    public static let none: Protection = []

    public var description: String { (contains(.read) ? "r" : "-") + (contains(.write) ? "w" : "-") }
}

/// One virtual memory area (Linux: `struct vm_area_struct`).
///
/// `start`, `end` and `pageOffset` change only with the address space's
/// mmap lock held exclusively *and* the owner's rmap lock held
/// exclusively, so an rmap walk (which holds only the latter, shared) sees
/// them stable.
final class VMA: @unchecked Sendable, CustomStringConvertible {
    var start: UInt64
    var end: UInt64
    var protection: Protection
    let kind: MappingKind
    /// The page index of `start` in the owner's index space (Linux: `vm_pgoff`):
    /// the file page for shared mappings, `start >> 12` at creation for
    /// anonymous ones (kept across mremap, so frames keep their index).
    var pageOffset: UInt32
    let region: AnonymousRegion?
    let file: BackingFile?
    unowned let space: AddressSpace
    /// `space`, unretained, for the rmap walk (`Machine.forEachMapping`)
    /// only, where reaching it costs no reference counting on an object
    /// every thread shares. Valid while the VMA is on its rmap owner's list
    /// (see `forEachMapping` for why).
    let unretainedSpace: Unmanaged<AddressSpace>
    /// Madvised `MADV_MERGEABLE`: the KSM scanner looks at it.
    var mergeable = false
    /// Registered with a userfaultfd for write-protect faults
    /// (`UFFDIO_REGISTER_MODE_WP`): its pages may be write-protected for the
    /// monitor (`AddressSpace.userfaultWriteProtect`).
    var userfaultWP = false
    /// madvise(MADV_HUGEPAGE) / (MADV_NOHUGEPAGE).
    var hugePage = false
    var noHugePage = false

    init(start: UInt64, end: UInt64, protection: Protection, kind: MappingKind, pageOffset: UInt32,
         region: AnonymousRegion?, file: BackingFile?, space: AddressSpace) {
        self.start = start
        self.end = end
        self.protection = protection
        self.kind = kind
        self.pageOffset = pageOffset
        self.region = region
        self.file = file
        self.space = space
        unretainedSpace = .passUnretained(space)
    }

    var pages: Int { Int((end - start) >> 12) }

    /// Makes `frame` this mapping's page at `address` for the reverse map
    /// (and, for private anonymous memory, marks the mapping as having had
    /// an anonymous page: Linux's `anon_vma_prepare`).
    func own(_ frame: Int32, at address: UInt64, memory: PhysicalMemory) {
        memory.setOwner(frame, owner: rmapOwner, index: index(of: address))
        if let region, !region.hasPages.load(ordering: .relaxed) { region.hasPages.store(true, ordering: .relaxed) }
    }
    var rmapOwner: UInt32 { region?.id ?? file!.id }

    func contains(_ address: UInt64) -> Bool { address >= start && address < end }

    /// The page index (in the owner's space) of `address`.
    func index(of address: UInt64) -> UInt32 { pageOffset &+ UInt32(truncatingIfNeeded: (address - start) >> 12) }

    /// The address at which this VMA maps page `index`, if it does.
    func address(ofIndex index: UInt32) -> UInt64? {
        guard index >= pageOffset else { return nil }
        let address = start + UInt64(index - pageOffset) << 12
        return address < end ? address : nil
    }

    var description: String {
        "[0x\(String(start, radix: 16)), 0x\(String(end, radix: 16))) \(protection) \(kind)"
    }
}
