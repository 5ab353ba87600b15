import LabSync
import MMUNotifier

/// An invalidation between its start and its end, as the primary tracks it
/// for the device-access check (`Machine.dmaAccess`): which devices have
/// acknowledged which part of it, and whether the page-table rewrite is
/// done.
///
/// The rule it serves: a device may keep using a translation in the range
/// until *its own* callback returns; after that, until the range ends, it
/// may use only what the primary maps there now. In Linux the pages may be
/// freed between `invalidate_range_start` and `_end` (the mmu_gather batch
/// in `zap_pte_range` is flushed and freed when it fills), so "the range is
/// still in progress" is no excuse once the device has acknowledged it.
///
/// Every stored property is guarded by the address space's page-table lock.
final class InFlightInvalidation: AcknowledgementRecorder, @unchecked Sendable {
    let range: InvalidationRange
    /// The address space's page-table lock.
    private let ptl: SpinLock
    /// The callbacks the start makes to devices, and which returned.
    private var callbacks: [DeviceCallback] = []
    /// The callbacks that returned, by index (inline for the first 64:
    /// almost every start makes fewer, and then nothing is allocated).
    private var returned = PositionSet()
    /// Devices that handle change_pte and so keep their translations
    /// through this (`ksm`) invalidation.
    private var keepers: [DeviceID] = []
    /// Set once every PTE of the range has its final value for this
    /// invalidation (under the same lock hold that wrote the last of them).
    var rewritten = false

    init(_ range: InvalidationRange, ptl: SpinLock) {
        self.range = range
        self.ptl = ptl
    }

    deinit { returned.dispose() }

    func expect(_ callbacks: [DeviceCallback]) {
        ptl.withLock {
            self.callbacks = callbacks
            returned.dispose()
            returned = PositionSet()
        }
    }

    func acknowledged(_ index: Int) {
        ptl.withLock {
            precondition(index >= 0 && index < callbacks.count, "acknowledgement \(index) of \(callbacks.count) callbacks")
            returned.insert(index)
        }
    }

    func keeping(_ devices: [DeviceID]) {
        ptl.withLock { keepers = devices }
    }

    /// Whether `device` keeps its translations through this invalidation
    /// and is told of the new PTE by change_pte instead (page-table lock
    /// held).
    ///
    /// Such a device learns that its writable translation went read-only
    /// in change_pte, which the primary calls under its page-table lock.
    /// Linux's KVM flushed its vCPUs' TLBs right there (an IPI answers
    /// without the page-table lock); here a device's DMA is judged under
    /// that lock, so a device cannot wait there for an access that is
    /// already on its way, and its TLB flush is due when the `ksm` range
    /// ends instead. Until then a write through its old writable
    /// translation of the same frame still lands before KSM compares the
    /// page (the compare follows the end), so nothing is lost; after the
    /// end it is a write through a read-only translation.
    func keeps(_ device: DeviceID) -> Bool {
        ptl.assertHeld()
        return keepers.contains(device)
    }

    /// Whether `device` has stopped using `address`: it has callbacks
    /// covering the address, and every one of them returned (page-table
    /// lock held). Until the last has, the device may still reach the page
    /// through a table that was not told yet.
    func isAcknowledged(by device: DeviceID, at address: UInt64) -> Bool {
        var covered = false
        for (index, callback) in callbacks.enumerated() where callback.device == device && address >= callback.start && address < callback.end {
            guard returned.contains(index) else { return false }
            covered = true
        }
        return covered
    }

    /// Whether the event only changes protection bits: every frame stays
    /// mapped where it was (mprotect, write-protect, soft-dirty, a device
    /// taking a page exclusive or giving it back), so a device that keeps
    /// reading the page it maps reads the right data. Writes are held to
    /// the permissions separately, and who may use an exclusive entry by
    /// the access check.
    var keepsFrames: Bool {
        switch range.event {
        case .mprotect, .writeProtect, .softDirty, .exclusive: true
        default: false
        }
    }
}
