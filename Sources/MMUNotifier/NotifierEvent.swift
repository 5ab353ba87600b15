/// Why the primary MMU is invalidating a range.
///
/// Events are *reasons*, so a subscriber can decide what to skip ("passing
/// along an enum value ... the exact event that actually triggered the mmu
/// notifier call (vmscan, migrate, ksm, ...)": Jérôme Glisse, quoted by
/// Andrea Arcangeli, linux-kernel, 2014-04-02, "Re: [PATCH] mm/mmu_notifier:
/// restore set_pte_at_notify semantics"). A subscriber that handles
/// `changePTE` may ignore `ksm` starts and ends; a device ignores a `migrate`
/// whose range carries its own owner cookie. The README maps each case to Linux's `enum mmu_notifier_event`.
public enum NotifierEvent: UInt8, Sendable, Hashable, CaseIterable, CustomStringConvertible {
    /// The range is unmapped (munmap); the VMA goes away.
    case munmap
    /// The range moves to another virtual address (mremap).
    case mremap
    /// The pages are zapped but the VMA stays (madvise MADV_DONTNEED / PAGEOUT).
    case madviseDontNeed
    /// The VMA's protection changes (mprotect).
    case mprotect
    /// Page-level write protection: fork's COW setup, writeback's page_mkclean.
    case writeProtect
    /// Soft-dirty bits are cleared (clear_refs): PTEs become write-protected.
    case softDirty
    /// Reclaim unmaps the page to evict it (try_to_unmap from vmscan).
    case vmscan
    /// The page moves to another frame; `InvalidationRange.owner` names the
    /// device that started the migration, so it can ignore its own.
    case migrate
    /// KSM replaces the page with a shared, write-protected one.
    case ksm
    /// A write breaks COW (or KSM) sharing: the PTE will point at a new copy.
    case cowBreak
    /// A device takes exclusive access to a page for an atomic operation
    /// (make_device_exclusive): the range carries that device's owner
    /// cookie, so it can skip its own conversion. With no owner: the CPU
    /// takes the page back from the device (Linux 6.15 and later send
    /// MMU_NOTIFY_CLEAR there, 5.14 to 6.14 MMU_NOTIFY_EXCLUSIVE without
    /// an owner), and the device must drop its exclusive entry.
    case exclusive
    /// The address space is being torn down at exit: the whole-space
    /// invalidation of intervals that `release` sends.
    case exit
    /// The OOM reaper frees the victim's memory; always non-blockable.
    case oomReap
    /// The pages are marked lazily freed (madvise MADV_FREE): the PTEs stay
    /// but become clean and old, so reclaim may discard them while nobody
    /// writes them again.
    case madviseFree
    /// A transparent huge page is split (a PMD mapping becomes 512 PTE
    /// mappings of the same frames), over the whole 2 MiB: before a partial
    /// munmap, mprotect, DONTNEED or MADV_FREE, a copy-on-write, a swap-out.
    case hugeSplit
    /// 512 small pages are replaced by one huge page (khugepaged, MADV_COLLAPSE).
    case collapse

    public var description: String { "\(name)" }

    /// The event's name as a static string (used where recording must not allocate).
    public var name: StaticString {
        switch self {
        case .munmap: "munmap"
        case .mremap: "mremap"
        case .madviseDontNeed: "madviseDontNeed"
        case .mprotect: "mprotect"
        case .writeProtect: "writeProtect"
        case .softDirty: "softDirty"
        case .vmscan: "vmscan"
        case .migrate: "migrate"
        case .ksm: "ksm"
        case .cowBreak: "cowBreak"
        case .exclusive: "exclusive"
        case .exit: "exit"
        case .oomReap: "oomReap"
        case .madviseFree: "madviseFree"
        case .hugeSplit: "hugeSplit"
        case .collapse: "collapse"
        }
    }

    /// The Linux `enum mmu_notifier_event` value the primary MMU would pass
    /// for this reason (see README for the per-case notes).
    public var linuxEvent: String {
        switch self {
        case .munmap, .mremap, .oomReap: "MMU_NOTIFY_UNMAP"
        case .exit: "MMU_NOTIFY_RELEASE"
        case .madviseDontNeed, .madviseFree, .vmscan, .ksm, .cowBreak, .hugeSplit, .collapse: "MMU_NOTIFY_CLEAR"
        case .mprotect: "MMU_NOTIFY_PROTECTION_VMA"
        case .writeProtect: "MMU_NOTIFY_PROTECTION_PAGE"
        case .softDirty: "MMU_NOTIFY_SOFT_DIRTY"
        case .migrate: "MMU_NOTIFY_MIGRATE"
        case .exclusive: "MMU_NOTIFY_EXCLUSIVE"
        }
    }
}
