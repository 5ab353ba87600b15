/// Names one address space (Linux: a `struct mm_struct`).
public struct AddressSpaceID: RawRepresentable, Sendable, Hashable, Comparable, CustomStringConvertible {
    public let rawValue: UInt64
    public init(rawValue: UInt64) { self.rawValue = rawValue }
    public init(_ rawValue: UInt64) { self.rawValue = rawValue }
    public static func < (a: Self, b: Self) -> Bool { a.rawValue < b.rawValue }
    public var description: String { "mm#\(rawValue)" }
}

/// An opaque cookie naming who started a migration (Linux:
/// `mmu_notifier_range.owner`), so a device can skip invalidations caused by
/// its own migrations.
public struct OwnerCookie: RawRepresentable, Sendable, Hashable, CustomStringConvertible {
    public let rawValue: UInt64
    public init(rawValue: UInt64) { self.rawValue = rawValue }
    public init(_ rawValue: UInt64) { self.rawValue = rawValue }
    public var description: String { "owner#\(rawValue)" }
}

/// A physical page frame number (Linux: a pfn). The notifier core only
/// passes it through (`changePTE`); the primary MMU model gives it meaning.
public struct PageFrameNumber: RawRepresentable, Sendable, Hashable, Comparable, CustomStringConvertible {
    public let rawValue: UInt64
    public init(rawValue: UInt64) { self.rawValue = rawValue }
    public init(_ rawValue: UInt64) { self.rawValue = rawValue }
    public static func < (a: Self, b: Self) -> Bool { a.rawValue < b.rawValue }
    public var description: String { "pfn#\(rawValue)" }
}

/// A new primary PTE value announced through `changePTE` (Linux's
/// `set_pte_at_notify`): the page at `address` now maps `frame`, in the
/// frame's `generation` (what a device must present to DMA through it).
public struct PrimaryPTE: Sendable, Hashable {
    public var address: UInt64
    public var frame: PageFrameNumber
    public var generation: UInt32
    public var writable: Bool
    public init(address: UInt64, frame: PageFrameNumber, generation: UInt32 = 0, writable: Bool) {
        self.address = address
        self.frame = frame
        self.generation = generation
        self.writable = writable
    }
}

/// Names one secondary MMU: the device (a plugin instance, an in-process
/// mirror) that subscriptions belong to and that issues device accesses.
/// The primary uses it to hold each device to what *its own* callbacks
/// promised: once a device's callback for an invalidation has returned,
/// that device may no longer use the range (see `AcknowledgementRecorder`).
public struct DeviceID: RawRepresentable, Sendable, Hashable, CustomStringConvertible {
    public let rawValue: UInt64
    public init(rawValue: UInt64) { self.rawValue = rawValue }
    public init(_ rawValue: UInt64) { self.rawValue = rawValue }
    public var description: String { "device#\(rawValue)" }
}
