import LabSync

/// A swap device with a swap cache (Linux: a `swap_info_struct` with its
/// `swap_map` and the swap cache).
///
/// A slot holds one page's payload and a count of the swap PTEs that point
/// at it. While a page is in the swap cache its frame and slot are linked:
/// a clean swapped-in page can be dropped again without a write, because
/// its slot still holds the same bytes. Writing the page makes the slot
/// stale, so it is freed (Linux: `folio_free_swap` on a write fault).
public final class SwapArea: @unchecked Sendable {
    // @unchecked: all state is guarded by `lock`.
    public let slots: Int
    let payloadSize: Int
    private let lock: SpinLock
    private let storage: UnsafeMutableRawPointer
    private var references: [UInt16]
    private var freeSlots: [Int32]
    /// Whether each slot is allocated (not on `freeSlots`): the invariant
    /// every retain, release and free is checked against.
    private var allocated: [Bool]
    private var cache: [Int32: Int32] = [:]  // slot -> frame
    private var slotOfFrame: [Int32: Int32] = [:]  // frame -> slot

    public private(set) var writes = 0
    public private(set) var reads = 0

    init(slots: Int, payloadSize: Int, sync: SyncDomain) {
        self.slots = slots
        self.payloadSize = payloadSize
        lock = SpinLock("swap", domain: sync)
        storage = .allocate(byteCount: max(slots, 1) * payloadSize, alignment: 16)
        storage.initializeMemory(as: UInt8.self, repeating: 0, count: max(slots, 1) * payloadSize)
        references = [UInt16](repeating: 0, count: slots)
        allocated = [Bool](repeating: false, count: slots)
        freeSlots = (0..<Int32(slots)).reversed()
    }

    deinit { storage.deallocate() }

    /// Slots in use (referenced by a PTE or the swap cache).
    public var usedSlots: Int { lock.withLock { slots - freeSlots.count } }

    /// Puts a frame in the swap cache with a fresh slot (Linux: `add_to_swap`).
    /// Returns nil when swap is full.
    func addToCache(_ frame: Int32) -> Int? {
        lock.withLock {
            guard let slot = freeSlots.popLast() else { return nil }
            precondition(!allocated[Int(slot)] && references[Int(slot)] == 0, "free swap slot \(slot) was in use")
            allocated[Int(slot)] = true
            cache[slot] = frame
            slotOfFrame[frame] = slot
            return Int(slot)
        }
    }

    /// The slot of a frame that is in the swap cache.
    func slot(of frame: Int32) -> Int? { lock.withLock { slotOfFrame[frame].map(Int.init) } }

    /// The swap-cache frame for a slot, with a reference taken, if any.
    func cachedFrame(_ slot: Int, memory: PhysicalMemory) -> Int32? {
        lock.withLock {
            guard let frame = cache[Int32(slot)], memory.tryGet(frame) else { return nil }
            return frame
        }
    }

    /// Reads `slot` into a fresh frame and links them in the swap cache
    /// (swap-in), atomically: only while some swap PTE still refers to the
    /// slot and no frame caches it yet (Linux: `swapcache_prepare` failing
    /// on a freed entry). Returns false otherwise; the faulting caller then
    /// finds its PTE changed, or the cached frame, when it retries.
    ///
    /// The swap cache's reference on the frame is taken here, under the
    /// lock that publishes it, so every lookup that can see the frame also
    /// sees that reference.
    func readIntoCache(_ slot: Int, frame: Int32, memory: PhysicalMemory) -> Bool {
        let target = memory.payload(of: frame)
        return lock.withLock {
            guard allocated[slot], references[slot] > 0, cache[Int32(slot)] == nil else { return false }
            target.baseAddress!.copyMemory(from: storage + slot * payloadSize, byteCount: payloadSize)
            reads += 1
            memory.get(frame)
            cache[Int32(slot)] = frame
            slotOfFrame[frame] = Int32(slot)
            return true
        }
    }

    /// Unlinks a frame from the swap cache only if nobody but the expected
    /// holders has a reference, checked under the swap lock so that a
    /// concurrent swap-in lookup (which takes its reference under the same
    /// lock) cannot slip in (Linux: `folio_ref_freeze`). A slot that no PTE
    /// references is freed.
    func removeFromCacheIfUnused(_ frame: Int32, expectedReferences: Int, expectedMappings: Int, memory: PhysicalMemory) -> Bool {
        lock.withLock {
            guard memory.refcount(of: frame) == expectedReferences, memory.mapcount(of: frame) == expectedMappings,
                let slot = slotOfFrame.removeValue(forKey: frame)
            else { return false }
            cache.removeValue(forKey: slot)
            if references[Int(slot)] == 0 { free(slot) }
            return true
        }
    }

    /// Points the swap-cache entry of `old` at `new` (migration).
    func replaceInCache(_ old: Int32, with new: Int32) -> Bool {
        lock.withLock {
            guard let slot = slotOfFrame.removeValue(forKey: old) else { return false }
            slotOfFrame[new] = slot
            cache[slot] = new
            return true
        }
    }

    /// One more swap PTE points at `slot`.
    func retain(_ slot: Int) {
        lock.withLock {
            precondition(allocated[slot], "retaining free swap slot \(slot)")
            references[slot] += 1
        }
    }

    /// Returns a slot to the free list (lock held).
    private func free(_ slot: Int32) {
        precondition(allocated[Int(slot)], "swap slot \(slot) freed twice")
        allocated[Int(slot)] = false
        freeSlots.append(slot)
    }

    /// One swap PTE fewer points at `slot`; the slot is freed when nothing
    /// (no PTE, no cached frame) uses it. If the last PTE went but a frame
    /// still caches the slot, that frame is returned so the caller can try
    /// to drop it (Linux: `free_swap_and_cache`).
    @discardableResult
    func release(_ slot: Int) -> Int32? {
        lock.withLock {
            precondition(allocated[slot] && references[slot] > 0, "swap slot \(slot) released more often than retained")
            references[slot] -= 1
            guard references[slot] == 0 else { return nil }
            if let cached = cache[Int32(slot)] { return cached }
            free(Int32(slot))
            return nil
        }
    }

    /// How many swap PTEs point at the slot of a cached frame.
    func swapReferences(of frame: Int32) -> Int? {
        lock.withLock { slotOfFrame[frame].map { Int(references[Int($0)]) } }
    }

    func write(_ frame: Int32, to slot: Int, memory: PhysicalMemory) {
        let source = memory.payload(of: frame)
        lock.withLock {
            (storage + slot * payloadSize).copyMemory(from: source.baseAddress!, byteCount: payloadSize)
            writes += 1
        }
    }

}
