/// A primary page-table entry, packed in 64 bits like a hardware PTE.
///
/// Present:      bit 0 set; bits 12... hold the frame; W/A/D/SD bits below;
///               with bit 8 (PROT_NONE) set the frame stays mapped (the
///               rmap, reclaim and migration see it) but no access is
///               allowed (Linux: `_PAGE_PROTNONE`, which `pte_present`
///               counts as present). With bit 9 (device-exclusive) set the
///               frame stays mapped for the rmap, reclaim and migration,
///               but only the device that took it exclusive may use it:
///               the CPU faults, and its fault restores the normal entry
///               (Linux: a device-exclusive entry, `make_device_exclusive`;
///               since 6.15 the rmap treats it as present, as here).
/// Swap entry:   bit 0 clear, bit 5 set; bits 12... hold the swap slot.
/// Migration:    bit 0 clear, bit 6 set; bits 12... hold the frame being
///               migrated (faults on it wait for the migration to finish);
///               W and PROT_NONE say how the mapping comes back.
/// Device-private: bit 0 clear, bit 7 set; bits 12... hold a page of a
///               device's memory (`DevicePage`); the CPU cannot reach it and
///               a CPU fault brings the page home (Linux: a device-private
///               swap entry, `make_writable_device_private_entry`).
/// Bit 10 (huge) on a present or migration entry: one of the 512 PTEs of
///               a PMD mapping of a transparent huge page. The model keeps
///               the 512 entries (each names its own frame of the folio,
///               so every path that reads a PTE reaches the right page) and
///               treats them as one: they are made, changed and removed
///               together, with one reference and one mapping count on the
///               folio's head, and any operation on part of them splits
///               the folio first (Linux: `split_huge_pmd`).
/// Bit 11 (userfaultfd write-protect) may be set on a present, swap or
///               migration entry: the page is write-protected for a
///               userfaultfd monitor, and a CPU write waits for the monitor
///               to resolve it (Linux: `_PAGE_UFFD_WP`, carried into swap
///               and migration entries as `pte_swp_uffd_wp`).
/// None:         all zero.
public struct PTE: RawRepresentable, Sendable, Hashable, CustomStringConvertible {
    public var rawValue: UInt64
    public init(rawValue: UInt64) { self.rawValue = rawValue }

    static let presentBit: UInt64 = 1 << 0
    static let writableBit: UInt64 = 1 << 1
    static let accessedBit: UInt64 = 1 << 2
    static let dirtyBit: UInt64 = 1 << 3
    static let softDirtyBit: UInt64 = 1 << 4
    static let swapBit: UInt64 = 1 << 5
    static let migrationBit: UInt64 = 1 << 6
    static let devicePrivateBit: UInt64 = 1 << 7
    static let protNoneBit: UInt64 = 1 << 8
    static let deviceExclusiveBit: UInt64 = 1 << 9
    static let hugeBit: UInt64 = 1 << 10
    static let uffdWPBit: UInt64 = 1 << 11
    static let payloadShift: UInt64 = 12

    public static let none = PTE(rawValue: 0)

    public static func present(
        frame: Int32, writable: Bool, accessed: Bool = true, dirty: Bool = false, softDirty: Bool = true, protNone: Bool = false
    ) -> PTE {
        var raw = (UInt64(UInt32(bitPattern: frame)) << payloadShift) | presentBit
        if protNone { raw |= protNoneBit }
        if writable { raw |= writableBit }
        if accessed { raw |= accessedBit }
        if dirty { raw |= dirtyBit }
        if softDirty { raw |= softDirtyBit }
        return PTE(rawValue: raw)
    }

    public static func swap(slot: Int) -> PTE { PTE(rawValue: (UInt64(slot) << payloadShift) | swapBit) }
    /// A migration entry remembers whether the page was writable, so the
    /// mapping comes back the same on the new frame.
    public static func migration(frame: Int32, writable: Bool, protNone: Bool = false, uffdWP: Bool = false) -> PTE {
        PTE(rawValue: (UInt64(UInt32(bitPattern: frame)) << payloadShift) | migrationBit | (writable ? writableBit : 0)
            | (protNone ? protNoneBit : 0) | (uffdWP ? uffdWPBit : 0))
    }

    /// Whether a migration entry restores a PROT_NONE mapping.
    var migrationIsProtNone: Bool { rawValue & Self.protNoneBit != 0 }

    /// The entry of a page that lives in device memory; `writable` as the
    /// page was when it moved.
    public static func devicePrivate(_ page: DevicePage, writable: Bool) -> PTE {
        PTE(rawValue: (page.rawValue << payloadShift) | devicePrivateBit | (writable ? writableBit : 0))
    }

    public var isNone: Bool { rawValue == 0 }
    public var isDevicePrivate: Bool { rawValue & (Self.presentBit | Self.devicePrivateBit) == Self.devicePrivateBit }
    public var devicePage: DevicePage { DevicePage(rawValue: rawValue >> Self.payloadShift) }
    public var isPresent: Bool { rawValue & Self.presentBit != 0 }
    /// Mapped, but PROT_NONE: neither the CPU nor a device may use it.
    public var isProtNone: Bool { rawValue & (Self.presentBit | Self.protNoneBit) == Self.presentBit | Self.protNoneBit }
    /// Present and accessible to the CPU (not PROT_NONE, not device-exclusive).
    public var isAccessible: Bool { rawValue & (Self.presentBit | Self.protNoneBit | Self.deviceExclusiveBit) == Self.presentBit }
    /// Mapped, but a device holds it exclusive (for its atomics): the CPU
    /// faults, and the fault gives the page back.
    public var isDeviceExclusive: Bool {
        rawValue & (Self.presentBit | Self.deviceExclusiveBit) == Self.presentBit | Self.deviceExclusiveBit
    }
    public var isSwap: Bool { rawValue & (Self.presentBit | Self.swapBit) == Self.swapBit }
    public var isMigration: Bool { rawValue & (Self.presentBit | Self.migrationBit) == Self.migrationBit }
    public var frame: Int32 { Int32(truncatingIfNeeded: rawValue >> Self.payloadShift) }
    public var swapSlot: Int { Int(rawValue >> Self.payloadShift) }
    public var isWritable: Bool { rawValue & Self.writableBit != 0 }
    public var isAccessed: Bool { rawValue & Self.accessedBit != 0 }
    public var isDirty: Bool { rawValue & Self.dirtyBit != 0 }
    public var isSoftDirty: Bool { rawValue & Self.softDirtyBit != 0 }
    /// One of the 512 entries of a PMD mapping of a huge page.
    public var isHuge: Bool { rawValue & Self.hugeBit != 0 && (isPresent || isMigration) }
    /// Write-protected for a userfaultfd monitor (any kind of entry).
    public var isUffdWP: Bool { rawValue & Self.uffdWPBit != 0 }

    func with(writable: Bool) -> PTE { PTE(rawValue: writable ? rawValue | Self.writableBit : rawValue & ~Self.writableBit) }
    func with(accessed: Bool) -> PTE { PTE(rawValue: accessed ? rawValue | Self.accessedBit : rawValue & ~Self.accessedBit) }
    func with(dirty: Bool) -> PTE { PTE(rawValue: dirty ? rawValue | Self.dirtyBit : rawValue & ~Self.dirtyBit) }
    func with(softDirty: Bool) -> PTE { PTE(rawValue: softDirty ? rawValue | Self.softDirtyBit : rawValue & ~Self.softDirtyBit) }
    func with(protNone: Bool) -> PTE { PTE(rawValue: protNone ? rawValue | Self.protNoneBit : rawValue & ~Self.protNoneBit) }
    func with(huge: Bool) -> PTE { PTE(rawValue: huge ? rawValue | Self.hugeBit : rawValue & ~Self.hugeBit) }
    func with(uffdWP: Bool) -> PTE { PTE(rawValue: uffdWP ? rawValue | Self.uffdWPBit : rawValue & ~Self.uffdWPBit) }
    func with(deviceExclusive: Bool) -> PTE {
        PTE(rawValue: deviceExclusive ? rawValue | Self.deviceExclusiveBit : rawValue & ~Self.deviceExclusiveBit)
    }

    public var description: String {
        if isNone { return "none" }
        if isSwap { return "swap(\(swapSlot))" + (isUffdWP ? " UFFD_WP" : "") }
        if isMigration { return "migration(frame \(frame))" + (isUffdWP ? " UFFD_WP" : "") + (isHuge ? " HUGE" : "") }
        if isDevicePrivate { return "device-private(\(devicePage))\(isWritable ? " W" : "")" }
        var bits = "frame \(frame)"
        if isWritable { bits += " W" }
        if isAccessed { bits += " A" }
        if isDirty { bits += " D" }
        if isSoftDirty { bits += " SD" }
        if isProtNone { bits += " PROT_NONE" }
        if isDeviceExclusive { bits += " EXCLUSIVE" }
        if isUffdWP { bits += " UFFD_WP" }
        if rawValue & Self.hugeBit != 0 { bits += " HUGE" }
        return bits
    }
}
