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
    private var returned: [Bool] = []
    /// Set once every PTE of the range has its final value for this
    /// invalidation (under the same lock hold that wrote the last of them).
    var rewritten = false

    init(_ range: InvalidationRange, ptl: SpinLock) {
        self.range = range
        self.ptl = ptl
    }

    func expect(_ callbacks: [DeviceCallback]) {
        ptl.withLock {
            self.callbacks = callbacks
            returned = Array(repeating: false, count: callbacks.count)
        }
    }

    func acknowledged(_ index: Int) {
        ptl.withLock { returned[index] = true }
    }

    /// Whether `device` has stopped using `address`: it has callbacks
    /// covering the address, and every one of them returned (page-table
    /// lock held). Until the last has, the device may still reach the page
    /// through a table that was not told yet.
    func isAcknowledged(by device: DeviceID, at address: UInt64) -> Bool {
        var covered = false
        for (index, callback) in callbacks.enumerated() where callback.device == device && address >= callback.start && address < callback.end {
            guard returned[index] else { return false }
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
