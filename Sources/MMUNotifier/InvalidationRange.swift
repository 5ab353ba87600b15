/// One invalidation: the half-open virtual range `[start, end)` of one
/// address space, why it happens, and whether the caller can wait.
///
/// Linux: `struct mmu_notifier_range`. `blockable == false` is
/// `MMU_NOTIFIER_RANGE_BLOCKABLE` cleared: the OOM reaper and similar callers
/// that must not sleep. A subscriber that would have to sleep answers
/// `retry` instead (Linux: -EAGAIN), and the caller retries later.
public struct InvalidationRange: Sendable, Hashable, CustomStringConvertible {
    public var addressSpace: AddressSpaceID
    public var start: UInt64
    public var end: UInt64
    public var event: NotifierEvent
    public var blockable: Bool
    /// Who started it, for `migrate` (and `exclusive`) events.
    public var owner: OwnerCookie?

    public init(
        addressSpace: AddressSpaceID,
        start: UInt64,
        end: UInt64,
        event: NotifierEvent,
        blockable: Bool = true,
        owner: OwnerCookie? = nil
    ) {
        precondition(start < end, "an invalidation range must not be empty: [\(start), \(end))")
        self.addressSpace = addressSpace
        self.start = start
        self.end = end
        self.event = event
        self.blockable = blockable
        self.owner = owner
    }

    /// Number of bytes covered.
    public var length: UInt64 { end - start }

    /// Whether `[otherStart, otherEnd)` intersects this range.
    @inlinable
    public func overlaps(_ otherStart: UInt64, _ otherEnd: UInt64) -> Bool {
        otherStart < end && start < otherEnd
    }

    /// Whether `address` lies in the range.
    @inlinable
    public func contains(_ address: UInt64) -> Bool { address >= start && address < end }

    public var description: String {
        let hex = { (v: UInt64) in "0x" + String(v, radix: 16) }
        var text = "\(addressSpace) [\(hex(start)), \(hex(end))) \(event)"
        if !blockable { text += " non-blockable" }
        if let owner { text += " \(owner)" }
        return text
    }
}
