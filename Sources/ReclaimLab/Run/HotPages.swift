import Synchronization

/// What the hot-pages check needs of a mapping devices use hot: when a
/// device last used each page, and how many young checks reclaim made of
/// it since it was last evicted.
final class HotPages: @unchecked Sendable {
    // @unchecked: two arrays of atomics, allocated once.
    /// A page a device used this recently (nanoseconds) is hot.
    static let window: UInt64 = 10_000_000
    let pages: Int
    /// Per page: the lab clock's nanoseconds after the last device access (0: never).
    let lastDeviceAccess: UnsafeMutablePointer<Atomic<UInt64>>
    /// Per page: `clear_young` calls that covered it since its last eviction.
    let youngChecks: UnsafeMutablePointer<Atomic<UInt32>>

    init(pages: Int) {
        self.pages = pages
        lastDeviceAccess = .allocate(capacity: pages)
        youngChecks = .allocate(capacity: pages)
        for page in 0..<pages {
            (lastDeviceAccess + page).initialize(to: Atomic(0))
            (youngChecks + page).initialize(to: Atomic(0))
        }
    }

    deinit {
        lastDeviceAccess.deinitialize(count: pages)
        lastDeviceAccess.deallocate()
        youngChecks.deinitialize(count: pages)
        youngChecks.deallocate()
    }

    /// A device finished using `page` at `nanoseconds`.
    func deviceUsed(_ page: Int, at nanoseconds: UInt64) {
        lastDeviceAccess[page].store(max(nanoseconds, 1), ordering: .releasing)
    }

    /// One eviction of `page` uses up one young check of it (if any);
    /// returns how many there were before. Counted one by one so that the
    /// evictions of two frames at one index (a forked child's COW copy
    /// beside its parent's) each find their own check.
    func takeYoungCheck(_ page: Int) -> UInt32 {
        var asked = youngChecks[page].load(ordering: .acquiring)
        while asked > 0 {
            let (exchanged, current) = youngChecks[page].compareExchange(expected: asked, desired: asked - 1, ordering: .acquiringAndReleasing)
            if exchanged { break }
            asked = current
        }
        return asked
    }

    /// Reclaim asked the secondaries about `[start, end)` of `mapping`.
    func noteYoungCheck(_ mapping: TrackedMapping, start: UInt64, end: UInt64) {
        let first = max(start, mapping.address)
        let last = min(end, mapping.address + UInt64(pages) * 4096)
        guard first < last else { return }
        for page in Int((first - mapping.address) >> 12)..<Int((last - mapping.address) >> 12) {
            youngChecks[page].add(1, ordering: .acquiringAndReleasing)
        }
    }
}
