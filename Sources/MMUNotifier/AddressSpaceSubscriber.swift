/// A subscriber's answer to `invalidateRangeStart`.
public enum StartResult: Sendable, Hashable {
    /// The device no longer uses translations in the range and will create no
    /// new ones until the matching end.
    case ok
    /// Only for a non-blockable range: stopping the device would have to
    /// sleep, so nothing was done. Linux: -EAGAIN.
    case retry
}

/// Optional abilities a subscriber declares once, at registration.
public struct SubscriberCapabilities: OptionSet, Sendable, Hashable {
    public let rawValue: UInt32
    public init(rawValue: UInt32) { self.rawValue = rawValue }

    /// It handles `changePTE`, and so may skip start/end of `ksm` events
    /// (event reasons are what make change_pte work: Andrea Arcangeli,
    /// linux-kernel, 2014-04-02, "Re: [PATCH] mm/mmu_notifier: restore
    /// set_pte_at_notify semantics").
    public static let changePTE = SubscriberCapabilities(rawValue: 1 << 0)
    /// It tracks accessed bits: `clearYoung` / `testYoung` mean something.
    public static let youngTracking = SubscriberCapabilities(rawValue: 1 << 1)
    /// It shares or caches the primary page tables and needs the atomic
    /// `invalidateSecondaryTLBs` under the page-table lock (SGI's GRU, an
    /// IOMMU doing shared virtual addressing; Linux:
    /// `arch_invalidate_secondary_tlbs`).
    public static let secondaryTLB = SubscriberCapabilities(rawValue: 1 << 2)
}

/// A whole-address-space subscription (Linux: `struct mmu_notifier` with its
/// `mmu_notifier_ops`).
///
/// Contexts, per callback:
/// - `invalidateRangeStart` / `invalidateRangeEnd`: may sleep when
///   `range.blockable`; inside a non-blockable section otherwise.
/// - `invalidateSecondaryTLBs`, `clearYoung`, `testYoung`, `changePTE`:
///   always inside a non-blockable section (they run under the page-table
///   lock in Linux); must not sleep.
/// - `release`: may sleep.
///
/// Ordering guarantee (the TLB analogy of Andrea Arcangeli,
/// linux-kernel/kvm-devel, 2008-01-24, "Re: [kvm-devel] [PATCH] export
/// notifier #1"): start comes before the primary PTEs are cleared;
/// `invalidateSecondaryTLBs` right after they are cleared; end after the
/// flush; the pages are freed only after end. A page is never freed while a
/// secondary may still reach it.
public protocol AddressSpaceSubscriber: AnyObject, Sendable {
    /// Shown in reports.
    var subscriberName: String { get }
    /// Declared abilities; read once at registration.
    var capabilities: SubscriberCapabilities { get }
    /// The device this subscription belongs to, if it issues device
    /// accesses the primary checks (nil: an observer such as the lab's
    /// trail, or a device whose accesses carry no identity).
    var device: DeviceID? { get }

    /// Stop using translations in `range` and create none until the matching
    /// end (the "block" that closes the race: Andrea Arcangeli, linux-kernel,
    /// 2008-01-30, "Re: [patch 2/6] mmu_notifier: Callbacks to invalidate
    /// address ranges"). For a non-blockable range, return `.retry` instead
    /// of sleeping.
    func invalidateRangeStart(_ range: InvalidationRange) -> StartResult
    /// The matching end: called only if this subscriber's start returned `.ok`.
    func invalidateRangeEnd(_ range: InvalidationRange)
    /// Atomic flush of secondary TLBs that cache the primary tables. Never sleeps.
    func invalidateSecondaryTLBs(_ range: InvalidationRange)
    /// Test and clear the device's accessed bits in `[start, end)`; return
    /// whether any was set. Reclaim ORs this into its decision, so it never
    /// evicts a page a device uses hot (Linux: `__mmu_notifier_clear_flush_young`
    /// ORs every subscriber's answer).
    func clearYoung(addressSpace: AddressSpaceID, start: UInt64, end: UInt64) -> Bool
    /// Whether the device accessed `address` recently, without clearing.
    func testYoung(addressSpace: AddressSpaceID, address: UInt64) -> Bool
    /// The primary PTE at `pte.address` now maps `pte.frame` (KSM merge).
    /// Only called on subscribers that declare `.changePTE`.
    func changePTE(addressSpace: AddressSpaceID, _ pte: PrimaryPTE)
    /// The address space is going away: tear every translation down now
    /// (everything torn down before the mm goes; Linux: `mn_hlist_release`).
    /// No callback follows a release.
    func release(addressSpace: AddressSpaceID)
}

extension AddressSpaceSubscriber {
    public var subscriberName: String { String(describing: type(of: self)) }
    public var capabilities: SubscriberCapabilities { [] }
    public var device: DeviceID? { nil }
    public func invalidateSecondaryTLBs(_ range: InvalidationRange) {}
    public func clearYoung(addressSpace: AddressSpaceID, start: UInt64, end: UInt64) -> Bool { false }
    public func testYoung(addressSpace: AddressSpaceID, address: UInt64) -> Bool { false }
    public func changePTE(addressSpace: AddressSpaceID, _ pte: PrimaryPTE) {}
    public func release(addressSpace: AddressSpaceID) {}
}
