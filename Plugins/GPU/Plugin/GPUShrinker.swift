import DevicePluginKit

/// Frees the GPU page-table mappings of idle ranges under memory pressure
/// (their table pages go back to the host). A range is idle when no GPU
/// work is in flight on it and it was not used since the previous scan.
/// In fast-fail mode (`canBlock` false) a contended VM lock stops the scan
/// at once: reclaim must not wait for the GPU.
final class GPUShrinker: Shrinker, @unchecked Sendable {
    // @unchecked: immutable; the GPU synchronises what it reaches.
    unowned let gpu: GPU

    init(gpu: GPU) { self.gpu = gpu }

    /// [non-blockable] Mapped ranges (an atomic: no lock taken here).
    override func count() -> UInt64 { UInt64(max(0, gpu.mappedRanges.load(ordering: .relaxed))) }

    override func scan(count: UInt64, canBlock: Bool) -> UInt64? {
        var zapped: UInt64 = 0
        for vm in gpu.liveVMs() where zapped < count {
            if canBlock {
                vm.lock.lock()
            } else if !vm.lock.tryLock() {
                gpu.counters[.shrinkerStops].add(1, ordering: .relaxed)
                return zapped > 0 ? zapped : nil
            }
            if !vm.tornDown {
                let previous = vm.clock
                vm.clock += 1
                for binding in vm.bindings where !binding.detached {
                    for notifier in binding.notifiers.valuesInKeyOrder {
                        for svm in notifier.ranges.valuesInKeyOrder where zapped < count && svm.mapped && svm.lastUse < previous {
                            guard svm.fences.load(ordering: .acquiring) == 0 else { continue }
                            vm.zap(svm)
                            zapped += 1
                        }
                    }
                }
                // Table pages kept for the next fault go back too.
                for page in vm.tableCache { gpu.host.freePageTablePage(page) }
                vm.tableCache.removeAll()
            }
            vm.lock.unlock()
        }
        gpu.counters[.shrinkerZapped].add(zapped, ordering: .relaxed)
        return zapped
    }
}
