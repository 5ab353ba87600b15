/// One callback an invalidation start will make to a device: the device
/// and the part of the range the callback covers (the whole range for a
/// whole-space subscriber, the overlap with the interval for an interval).
public struct DeviceCallback: Sendable, Hashable {
    public let device: DeviceID
    public let start: UInt64
    public let end: UInt64
}

/// Hears, while an invalidation starts, which devices stop using which part
/// of the range: first every callback the start will make to a device
/// (`expect`), then each one that returned having stopped (`acknowledged`).
///
/// Why it exists: in Linux the pages of a range may be freed between
/// `invalidate_range_start` and `_end` (`zap_pte_range` flushes the
/// mmu_gather batch and frees its pages whenever the batch fills), so a
/// device must stop using the range when *its* callback returns, not when
/// the range ends. The primary MMU passes a recorder to
/// `startInvalidation` and checks every device access against it. A
/// device with several subscriptions over an address (two memory regions
/// of one NIC over the same pages) has stopped using the address only once
/// every one of them has returned: until then it may still be reaching the
/// page through a table that has not been told.
///
/// What counts: a whole-space subscriber's `invalidateRangeStart`
/// answering `.ok`, an interval's `invalidate` answering true. A
/// subscriber that handles change_pte is not expected to stop for a `ksm`
/// range (it may skip that start and repoint its translations in
/// change_pte). A blockable start answered with retry acknowledges nothing
/// (a contract violation is recorded instead). A refused non-blockable
/// start may have acknowledged parts already; the invalidation then did not
/// happen, and the recorder is dropped with it.
///
/// Contexts: called on the invalidating thread, inside the start's
/// non-blockable section if the range is not blockable: must not sleep.
public protocol AcknowledgementRecorder: AnyObject, Sendable {
    /// Before any callback: those the start will make to devices, in the
    /// order it will make them.
    func expect(_ callbacks: [DeviceCallback])
    /// The expected callback at `index` returned having stopped.
    func acknowledged(_ index: Int)
    /// Before any callback: the devices that may keep their translations
    /// through this start (a `ksm` range, and they handle change_pte).
    /// Called only when there are some.
    func keeping(_ devices: [DeviceID])
}

extension AcknowledgementRecorder {
    public func keeping(_ devices: [DeviceID]) {}
}
