import LabSync

// Transparent huge pages: 2 MiB folios of 512 frames with one head.
//
// The head holds the folio's reference, mapping (one per PMD mapping) and
// pin counts, its flags, rmap owner and index, its lock and its one LRU
// place; a tail holds only its payload and generation, and its metadata
// says whose tail it is (`owners`: the head, `indices`: its place). The
// frames need not be contiguous: the lab's frames have no addresses, and
// what matters to a secondary MMU is that 512 pages are mapped, counted,
// aged, moved and freed as one (the GPU plugin's 2 MiB entries keep 512
// translations for the same reason).

extension PhysicalMemory {
    /// Pages in a huge folio.
    public static let hugePages = 512

    /// A fresh huge folio: 512 free frames of one node (preferring `node`),
    /// zeroed, the head with one reference and `flags` plus `.huge`, the
    /// tails marked. Only while the node keeps its low watermark free
    /// afterwards (Linux allocates THPs for faults without direct reclaim
    /// by default: GFP_TRANSHUGE_LIGHT); nil otherwise, and the caller
    /// falls back to small pages.
    public func allocateHuge(preferring node: Int = 0, flags: FrameFlags = [], movable: Bool = true) -> Int32? {
        let count = Self.hugePages
        for step in 0..<nodes.count {
            let candidate = nodes[(node + step) % nodes.count]
            guard candidate.freeCount > configuration.lowFree + count else { continue }
            var frames: [Int32] = []
            frames.reserveCapacity(count)
            candidate.popFree(count, into: &frames, next: lruNext, floor: configuration.lowFree, movable: movable)
            guard frames.count == count else {
                for frame in frames { candidate.pushFree(frame, next: lruNext, prev: lruPrev) }
                continue
            }
            let head = frames[0]
            for (k, frame) in frames.enumerated() {
                let f = Int(frame)
                refcounts[f].store(k == 0 ? 1 : 0, ordering: .relaxed)
                mapcounts[f].store(0, ordering: .relaxed)
                pincounts[f].store(0, ordering: .relaxed)
                (payloads + f * payloadSize).initializeMemory(as: UInt8.self, repeating: 0, count: payloadSize)
                if k == 0 {
                    owners[f] = 0
                    indices[f] = 0
                } else {
                    // Whose tail it is, before the flag says it is one.
                    owners[f] = UInt32(bitPattern: head)
                    indices[f] = UInt32(k)
                }
            }
            folios.withLock { $0[head] = frames }
            for frame in frames.dropFirst() { flagWords[Int(frame)].store(FrameFlags([.allocated, .tail]).rawValue, ordering: .releasing) }
            flagWords[Int(head)].store(flags.union([.allocated, .huge]).rawValue, ordering: .releasing)
            return head
        }
        return nil
    }

    /// The frames of the huge folio headed by `head`, head first (its
    /// page 0 first, page 511 last).
    public func members(of head: Int32) -> [Int32] {
        guard let frames = folios.withLock({ $0[head] }) else { preconditionFailure("frame \(head) heads no huge folio") }
        return frames
    }

    /// Frees a huge folio whose last reference went (from `put`): every
    /// frame's generation changes and it goes back to its node's free
    /// list; the head leaves its LRU list.
    func freeFolio(_ head: Int32) {
        let frames = folios.withLock { $0.removeValue(forKey: head) }
        guard let frames else { preconditionFailure("freeing frame \(head) as a huge folio it does not head") }
        precondition(mapcounts[Int(head)].load(ordering: .relaxed) == 0, "freeing huge folio \(head) that is still mapped")
        precondition(pincounts[Int(head)].load(ordering: .relaxed) == 0, "freeing huge folio \(head) that is still pinned")
        precondition(!flags(of: head).contains(.swapCache), "freeing huge folio \(head) that is in the swap cache")
        // Tails first become plain free frames (their owners reset after
        // the tail flag goes, see `head(of:)`), then all go back together.
        for frame in frames.dropFirst() {
            flagWords[Int(frame)].store(FrameFlags.allocated.rawValue, ordering: .releasing)
            owners[Int(frame)] = 0
            indices[Int(frame)] = 0
        }
        nodes[node(of: head).id].release(frames, memory: self)
    }

    /// Makes every frame of the huge folio headed by `head` a small page of
    /// its own (the metadata half of `split_huge_page`): each tail gets the
    /// head's flags (dirty, referenced, anonymous, lazily freed; not its LRU
    /// place or lock), the folio's owner at its own index, no mappings, and
    /// one reference of its own, for the caller, which also has each tail
    /// locked. The head stays as it was, minus `.huge`. Returns the frames,
    /// head first. The caller holds the head's lock, and has turned every
    /// mapping of the folio into migration entries: nobody reaches a tail
    /// through a page table meanwhile.
    func splitFolioMetadata(_ head: Int32) -> [Int32] {
        let frames = folios.withLock { $0.removeValue(forKey: head) }
        guard let frames else { preconditionFailure("splitting frame \(head), which heads no huge folio") }
        precondition(pincounts[Int(head)].load(ordering: .relaxed) == 0, "splitting huge folio \(head), which is pinned")
        let inherited = flags(of: head).subtracting([.huge, .onLRU, .active, .locked, .waiters, .tail])
        let owner = owners[Int(head)]
        let index = indices[Int(head)]
        for (k, frame) in frames.enumerated().dropFirst() {
            let f = Int(frame)
            refcounts[f].store(1, ordering: .relaxed)
            mapcounts[f].store(0, ordering: .relaxed)
            pincounts[f].store(0, ordering: .relaxed)
            // The tail flag goes first (releasing), then the owner changes.
            flagWords[f].store(inherited.union([.allocated, .locked]).rawValue, ordering: .releasing)
            owners[f] = owner
            indices[f] = index &+ UInt32(k)
        }
        clearFlags(.huge, on: head)
        return frames
    }
}
