import LabSync
import Synchronization

// Interval subscriptions of an address space (Linux:
// `mmu_interval_notifier_insert` / `_remove`, `mmu_interval_read_begin`):
// the part of `AddressSpaceNotifiers` that adds and removes them and
// applies the changes deferred while invalidations are active.

extension AddressSpaceNotifiers {
    /// Adds an interval subscription over `[start, end)` (Linux:
    /// `mmu_interval_notifier_insert`).
    ///
    /// If invalidations are active, the interval is not put in the tree yet
    /// (it could not be made consistent with them); it is queued, and its
    /// sequence is set to the current odd sequence so that `readBegin`
    /// sleeps until they have all ended. Either way the device cannot
    /// install a translation that an in-flight invalidation should have
    /// removed: the "forced sequence retry" answer to the race `mm_lock`
    /// closed (Linux: `__mmu_interval_notifier_insert`).
    public func insertInterval(
        start: UInt64, end: UInt64, ops: any IntervalInvalidator
    ) throws(SubscriptionError) -> IntervalNotifier {
        precondition(start < end, "empty interval")
        return try lock.withLock { () throws(SubscriptionError) -> IntervalNotifier in
            guard !released else { throw .addressSpaceReleased(addressSpace) }
            let handle: UInt32
            if let reused = freeHandles.popLast() {
                handle = reused
            } else {
                handle = UInt32(intervals.count)
                intervals.append(nil)
            }
            if activeInvalidations > 0 {
                let interval = IntervalNotifier(start: start, end: end, owner: self, handle: handle, ops: ops, seq: invalidateSeq)
                intervals[Int(handle)] = .passRetained(interval)
                deferredInserts.append(interval)
                return interval
            }
            let interval = IntervalNotifier(start: start, end: end, owner: self, handle: handle, ops: ops, seq: invalidateSeq - 1)
            intervals[Int(handle)] = .passRetained(interval)
            tree.insert(start: start, end: end, handle: handle)
            return interval
        }
    }

    /// Removes an interval subscription (Linux:
    /// `mmu_interval_notifier_remove`). May sleep: if invalidations are
    /// active, removal is deferred and this waits until they have ended.
    /// When it returns no callback on the interval is running or will run.
    public func removeInterval(_ interval: IntervalNotifier, file: StaticString = #fileID, line: UInt = #line) throws(SubscriptionError) {
        let site = SourceSite(file: file, line: line)
        precondition(interval.owner === self, "interval belongs to \(interval.owner.addressSpace)")
        core.sync.mightSleep(.wait, object: "interval removal", site: site)
        // It may wait for the invalidations in flight: ordered as if it took
        // the range-start map (Linux: mmu_interval_notifier_remove).
        core.rangeStartMap?.mightWait(site: site)
        var dropped: (any IntervalInvalidator)? = nil
        let waitFor = try lock.withLock { () throws(SubscriptionError) -> UInt64? in
            guard intervals.indices.contains(Int(interval.handle)),
                intervals[Int(interval.handle)]?.toOpaque() == Unmanaged.passUnretained(interval).toOpaque()
            else {
                throw .notRegistered
            }
            if let queued = deferredInserts.firstIndex(where: { $0 === interval }) {
                deferredInserts.remove(at: queued)
                dropped = forget(interval)
                return nil
            }
            if deferredRemovals.contains(where: { $0 === interval }) { return invalidateSeq }
            if activeInvalidations > 0 {
                deferredRemovals.append(interval)
                return invalidateSeq
            }
            tree.remove(start: interval.start, end: interval.end, handle: interval.handle)
            dropped = forget(interval)
            return nil
        }
        // Released here, outside the spin lock, in case its deinit sleeps.
        withExtendedLifetime(dropped) {}
        if let waitFor { waitForSequenceChange(from: waitFor, site: site) }
    }

    /// Number of intervals in the tree (deferred inserts not counted).
    public var intervalCount: Int { lock.withLock { tree.count } }

    func readBegin(_ interval: IntervalNotifier, site: SourceSite) -> UInt64 {
        let (seq, invalidating) = lock.withLock { () -> (UInt64, Bool) in
            let seq = interval.currentSeq
            // Equal to the address space's (odd) sequence: an invalidation
            // that touched this interval is still in progress.
            return (seq, seq == invalidateSeq)
        }
        if invalidating { waitForSequenceChange(from: seq, site: site) }
        return seq
    }

    private func waitForSequenceChange(from seq: UInt64, site: SourceSite) {
        lock.withLock { sequenceWaiters += 1 }
        waitQueue.wait(file: site.file, line: site.line) { lock.withLock { invalidateSeq != seq } }
        lock.withLock { sequenceWaiters -= 1 }
    }

    /// Applies queued interval changes; lock held, no invalidation active.
    /// Returns the ops of removed intervals, to be released after unlocking.
    func applyDeferredIntervalChanges() -> [any IntervalInvalidator] {
        lock.assertHeld()
        assert(activeInvalidations == 0, "deferred interval changes applied while an invalidation is active")
        for interval in deferredInserts {
            tree.insert(start: interval.start, end: interval.end, handle: interval.handle)
        }
        deferredInserts.removeAll(keepingCapacity: true)
        var dropped: [any IntervalInvalidator] = []
        for interval in deferredRemovals {
            tree.remove(start: interval.start, end: interval.end, handle: interval.handle)
            if let ops = forget(interval) { dropped.append(ops) }
        }
        deferredRemovals.removeAll(keepingCapacity: true)
        return dropped
    }

    /// Frees the interval's handle and detaches its ops (lock held).
    private func forget(_ interval: IntervalNotifier) -> (any IntervalInvalidator)? {
        lock.assertHeld()
        let ops = interval.detachOps()
        intervals[Int(interval.handle)]?.release()
        intervals[Int(interval.handle)] = nil
        freeHandles.append(interval.handle)
        return ops
    }
}
