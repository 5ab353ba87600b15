import DevicePluginKit
import Synchronization

/// A shared-virtual-memory range (drm_gpusvm's `drm_gpusvm_range`): a chunk
/// of a binding, 2 MiB, 64 KiB or 4 KiB, aligned to its size, that the GPU
/// faults in and maps as a unit. A range is never split: when the CPU
/// unmaps part of it, the whole range is zapped and marked unmapped, and
/// the garbage collector removes it later, outside the notifier callback.
final class SVMRange: @unchecked Sendable {
    // @unchecked: the vars are guarded by the VM's lock; `fences` is atomic.
    static let chunkSizes: [UInt64] = [2 << 20, 64 << 10, 4 << 10]

    let start: UInt64
    let end: UInt64
    unowned let notifier: SVMNotifier
    /// Translations are installed in the GPU page table.
    var mapped = false
    /// The CPU unmapped (part of) it: waiting for the garbage collector.
    var unmapped = false
    /// The VM's clock when the GPU last used it (the shrinker's aging).
    var lastUse: UInt64 = 0
    /// In-flight GPU work on the range (a fence each): an invalidation that
    /// may sleep waits for them; one that may not answers retry.
    let fences = Atomic<Int>(0)

    init(start: UInt64, end: UInt64, notifier: SVMNotifier) {
        self.start = start
        self.end = end
        self.notifier = notifier
    }

    var length: UInt64 { end - start }
    func overlaps(_ otherStart: UInt64, _ otherEnd: UInt64) -> Bool { start < otherEnd && otherStart < end }
}

/// One interval notifier over an aligned region of a binding (drm_gpusvm's
/// `drm_gpusvm_notifier`), holding the ranges made in it. Inserted on the
/// first fault in the region, removed by the garbage collector when its
/// last range goes.
final class SVMNotifier: IntervalSubscription, @unchecked Sendable {
    // @unchecked: `ranges` is guarded by the VM's lock and changed only by
    // the fault handler and the garbage collector (which the VM's fault lock
    // serialises).
    static let regionSize: UInt64 = 8 << 20

    unowned let vm: GPUVM
    unowned let binding: GPUBinding
    let start: UInt64
    let end: UInt64
    /// By start address.
    var ranges: [UInt64: SVMRange] = [:]

    init(vm: GPUVM, binding: GPUBinding, start: UInt64, end: UInt64) {
        self.vm = vm
        self.binding = binding
        self.start = start
        self.end = end
    }

    /// The range holding `address`, if one was made.
    func range(containing address: UInt64) -> SVMRange? {
        for size in SVMRange.chunkSizes {
            if let range = ranges[address & ~(size - 1)], range.end - range.start == size, address < range.end { return range }
        }
        return nil
    }

    override func invalidate(range: InvalidationRange, currentSeq: UInt64) -> Bool {
        vm.invalidate(self, range, currentSeq)
    }
}

/// One window the host bound: GPU virtual addresses equal the CPU's
/// (shared virtual memory), over `[start, end)` of one address space.
final class GPUBinding: @unchecked Sendable {
    // @unchecked: `notifiers` is guarded like SVMNotifier.ranges.
    let start: UInt64
    let end: UInt64
    let writable: Bool
    unowned let vm: GPUVM
    /// By region start.
    var notifiers: [UInt64: SVMNotifier] = [:]
    var detached = false

    init(start: UInt64, end: UInt64, writable: Bool, vm: GPUVM) {
        self.start = start
        self.end = end
        self.writable = writable
        self.vm = vm
    }

    func contains(_ address: UInt64) -> Bool { address >= start && address < end }

    /// The region of the notifier that covers `address`.
    func region(of address: UInt64) -> (start: UInt64, end: UInt64) {
        let aligned = address & ~(SVMNotifier.regionSize - 1)
        return (max(start, aligned), min(end, aligned + SVMNotifier.regionSize))
    }

    /// The largest chunk (at most `limit`) around `address` that lies in the
    /// binding and overlaps no range of `notifier` (drm_gpusvm's chunk choice).
    func chunk(around address: UInt64, in notifier: SVMNotifier, limit: UInt64) -> (UInt64, UInt64) {
        for size in SVMRange.chunkSizes where size <= limit {
            let first = address & ~(size - 1)
            let last = first + size
            guard first >= start, last <= end else { continue }
            if notifier.ranges.values.contains(where: { $0.overlaps(first, last) }) { continue }
            return (first, last)
        }
        return (address & ~4095, (address & ~4095) + 4096)
    }
}
