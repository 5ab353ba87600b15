import CDevicePluginABI
import DevicePluginKit

extension GPU {
    /// Moves a range of a binding to VRAM (`toDevice`) or back (Linux:
    /// `migrate_vma_*` as drm_gpusvm and nouveau drive them).
    ///
    /// Both ways the GPU first drops its own translations of the range and
    /// waits for its work on it; then the host migrates, announcing this
    /// GPU as the owner, so the GPU's notifier skips that invalidation (it
    /// already let go). To VRAM, the pages are faulted in first (writable
    /// where the binding allows, so copy-on-write is broken and they are
    /// exclusive). The
    /// fault lock is held throughout, so no fault can re-map the old pages
    /// in between. When VRAM is full the oldest VRAM pages are evicted to
    /// system memory and the move is tried once more. The next GPU access
    /// faults the VRAM pages in.
    func migrate(_ object: AnyObject, deviceAddress: UInt64, length: UInt64, toDevice: Bool) throws(PluginError) {
        let binding = object as! GPUBinding
        let (start, end) = try window(binding, deviceAddress, length)
        guard let vram else { throw PluginError(status: Int32(MMULAB_ERR_NOT_SUPPORTED), "this GPU has no VRAM (vram=0, or an ABI 1.0 host)") }
        let vm = binding.vm
        try faultLock.withLock { () throws(PluginError) in
            // Either way the host announces this GPU as the owner (ABI 1.3),
            // so our notifier skips the invalidation: drop our own
            // translations of the range and wait for our work on it first.
            if toDevice {
                _ = try host.faultRange(addressSpace: vm.addressSpace, start: start, length: end - start, write: binding.writable)
            }
            let affected = vm.lock.withLock { () -> [SVMRange] in
                let ranges = binding.notifiers.valuesInKeyOrder.flatMap { $0.ranges.valuesInKeyOrder }.filter { $0.overlaps(start, end) }
                for svm in ranges { vm.zap(svm) }
                return ranges
            }
            vm.waitForFences(affected)
            guard toDevice else {
                let moved = try host.migrateToHost(vram, addressSpace: vm.addressSpace, start: start, length: end - start)
                counters[.migratedToHost].add(moved, ordering: .relaxed)
                return
            }
            let pages = (end - start) / 4096
            var moved = try host.migrateToDevice(vram, addressSpace: vm.addressSpace, start: start, length: end - start)
            if moved < pages, host.usedPages(of: vram) + (pages - moved) > UInt64(configuration.vramPages) {
                // VRAM pressure: evict the oldest pages home, then try once more.
                counters[.vramEvictions].add(host.evict(vram, pages: pages - moved), ordering: .relaxed)
                moved += try host.migrateToDevice(vram, addressSpace: vm.addressSpace, start: start, length: end - start)
            }
            counters[.migratedToVRAM].add(moved, ordering: .relaxed)
        }
    }
}
