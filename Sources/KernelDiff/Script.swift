/// A kernel-diff script: a few mappings and a sequence of primary-MMU
/// operations on them, run once in a real process on the real kernel and
/// once in the model, step by step. Read from a `.kdiff` file by
/// `ScriptParser` (the format is in the README, "The differential harness").
public struct Script: Sendable, Hashable {
    /// The file's name without its directory and `.kdiff` extension: what
    /// the known-differences list names.
    public let name: String
    /// The file it was read from (for messages).
    public let path: String
    /// The mappings, in the order the script makes them (ids are indices).
    public let mappings: [MappingDeclaration]
    public let steps: [Step]

    /// The mapping called `name`.
    public func mapping(named name: String) -> MappingDeclaration? { mappings.first { $0.name == name } }
}

/// What a mapping maps.
public enum MappingKind: String, Sendable, Hashable, CaseIterable {
    /// `MAP_PRIVATE | MAP_ANONYMOUS`.
    case anon
    /// `MAP_SHARED | MAP_ANONYMOUS` (shmem).
    case shared
    /// `MAP_SHARED` of a file on a disk file system.
    case file
}

/// `PROT_READ | PROT_WRITE`, `PROT_READ`, `PROT_NONE`.
public enum Protection: String, Sendable, Hashable, CaseIterable {
    case rw, r, none
}

/// What a mapping tells the kernel about transparent huge pages (the
/// machine's setting is `madvise`, in the runner and in the model).
public enum HugePageAdvice: String, Sendable, Hashable, CaseIterable {
    /// `MADV_NOHUGEPAGE` (the default): small pages only.
    case nohuge
    /// `MADV_HUGEPAGE`: a fault fills a whole aligned 2 MiB.
    case huge
    /// Neither: small pages on faults, and khugepaged leaves it alone, but
    /// `MADV_COLLAPSE` may collapse it (it ignores the setting).
    case unadvised
}

/// A mapping a script makes: its id (index in `Script.mappings`), name,
/// kind, size, and its huge-page advice.
public struct MappingDeclaration: Sendable, Hashable {
    public let id: Int
    public let name: String
    public let kind: MappingKind
    public let pages: Int
    public let advice: HugePageAdvice

    public init(id: Int, name: String, kind: MappingKind, pages: Int, advice: HugePageAdvice = .nohuge) {
        self.id = id
        self.name = name
        self.kind = kind
        self.pages = pages
        self.advice = advice
    }
}

/// Pages `first ..< first + count` of a mapping.
public struct PageRange: Sendable, Hashable, CustomStringConvertible {
    public let mapping: Int
    public let first: Int
    public let count: Int

    public var pages: Range<Int> { first..<first + count }
    public var description: String { count == 1 ? "\(first)" : "\(first)-\(first + count - 1)" }
}

/// One operation of a script. Page ranges are checked against their mapping
/// when the script is read.
public enum Operation: Sendable, Hashable {
    case map(MappingDeclaration, Protection)
    /// CPU reads (the first 32-bit word of each page).
    case read(PageRange)
    /// CPU writes `value` (the first 32-bit word of each page).
    case write(PageRange, UInt32)
    /// The KVM guest's vCPU reads or writes the pages through its memslot.
    case guestRead(PageRange)
    case guestWrite(PageRange, UInt32)
    case munmap(PageRange)
    /// Moves the whole mapping to a new address (`MREMAP_MAYMOVE | MREMAP_FIXED`);
    /// the memslot follows it, as a VMM's would.
    case mremap(mapping: Int)
    case dontNeed(PageRange)
    /// `MADV_FREE`: the pages stay until reclaim (here `pageout`) discards the clean ones.
    case free(PageRange)
    /// userfaultfd write-protect (`protect`) or unprotect of the pages
    /// (`UFFDIO_WRITEPROTECT`; the mapping is registered on first use).
    /// No script may write a protected page: nobody would resolve it.
    case writeProtect(PageRange, protect: Bool)
    /// `UFFDIO_UNREGISTER` of the whole mapping (after `wrprotect`): a
    /// script that write-protects ends with it, or the userfaultfd's
    /// release would clear the marks at some moment during the exit.
    case unregister(mapping: Int)
    /// `MADV_COLLAPSE`: small pages of an aligned 2 MiB become a huge page.
    case collapse(PageRange)
    case pageOut(PageRange)
    case mergeable(PageRange)
    case mprotect(PageRange, Protection)
    case fork
    case childRead(PageRange)
    case childWrite(PageRange, UInt32)
    case childExit
    /// Let KSM scan until every identical mergeable page has merged.
    case ksm
    /// Move the pages to another NUMA node (`move_pages`); needs two nodes.
    case migrate(PageRange)
    /// The process exits (`exit_mmap`).
    case exit
}

/// One line of a script that does something, with the guest reads the
/// script's `watch` lines ask for after it.
public struct Step: Sendable, Hashable {
    /// 1-based, counting operation lines only: what the known-differences list names.
    public let number: Int
    /// The line in the file.
    public let line: Int
    /// The line as written (comment stripped).
    public let text: String
    public let operation: Operation
    /// Pages the guest reads after the operation (every `watch` seen so far).
    public let watched: [PageRange]
}
