public import LabSync
public import MMUNotifier
import Synchronization

/// The machine's physical memory: a fixed array of page frames split into
/// NUMA-like nodes, each frame with its metadata and a payload.
///
/// Metadata is kept in parallel arrays, 30 bytes a frame (budget: 32), so
/// 16 M frames need 480 MiB besides their payload:
///
/// | field | bytes | guarded by |
/// |---|---|---|
/// | refcount | 4 | atomic |
/// | mapcount | 2 | atomic |
/// | pincount | 2 | atomic |
/// | flags | 2 | atomic bit operations |
/// | generation | 4 | atomic; bumped on every free |
/// | lru prev / next | 8 | the node's lock (free list and LRU lists share them) |
/// | owner / index | 8 | the frame lock (`locked` flag) or exclusive ownership |
///
/// The page index is 32 bits, so the model's virtual addresses stay below
/// 2^44 (16 TiB), and files below 2^32 pages.
///
/// Reference counting follows Linux's `struct page`: every PTE that maps the
/// frame, the page cache, the swap cache, every pin and every temporary
/// holder (reclaim's isolation, a DMA in flight) holds one reference; the
/// frame is freed when the last one is put (`put`). The generation changes
/// on every free, so a device that remembers `(frame, generation)` can be
/// caught using a frame after it was freed and reused.
public final class PhysicalMemory: @unchecked Sendable {
    // @unchecked: per-field guards as in the table above.

    public struct Configuration: Sendable, Hashable {
        /// Number of page frames, over all nodes.
        public var frames: Int
        /// Number of nodes; frames are split evenly, node 0 first.
        public var nodes: Int
        /// Bytes of payload per frame: 8 up to 4096 (16 hold the oracle's tag).
        public var payloadSize: Int
        /// Free frames per node below which only reclaim may allocate
        /// (Linux: the min watermark; the reserve PF_MEMALLOC may use).
        public var minFree: Int
        /// Free frames per node below which the background reclaimer wakes.
        public var lowFree: Int
        /// Free frames per node the background reclaimer works up to.
        public var highFree: Int
        /// Frames of each node in its ZONE_MOVABLE (the node's upper part;
        /// Linux: `movablecore=`): user memory comes from there first, and
        /// a long-term pin moves a page out of it. 0: no movable zone.
        public var movablePerNode: Int

        public init(
            frames: Int, nodes: Int = 1, payloadSize: Int = 16, minFree: Int? = nil, lowFree: Int? = nil, highFree: Int? = nil,
            movablePerNode: Int = 0
        ) {
            self.movablePerNode = movablePerNode
            self.frames = frames
            self.nodes = nodes
            self.payloadSize = payloadSize
            let perNode = frames / max(nodes, 1)
            self.minFree = minFree ?? max(perNode / 128, 4)
            self.lowFree = lowFree ?? max(perNode / 64, 8)
            self.highFree = highFree ?? max(perNode / 32, 16)
        }

        /// A description of what is wrong, or nil.
        public var problem: String? {
            if frames < 1 || frames > Int(Int32.max) { return "frames must be 1...\(Int32.max), got \(frames)" }
            if nodes < 1 || nodes > 64 || nodes > frames { return "nodes must be 1...64 and at most frames, got \(nodes)" }
            if payloadSize < 8 || payloadSize > 4096 { return "payloadSize must be 8...4096 bytes, got \(payloadSize)" }
            if !(0 <= minFree && minFree <= lowFree && lowFree <= highFree && highFree < frames / nodes) {
                return "watermarks must satisfy 0 <= min (\(minFree)) <= low (\(lowFree)) <= high (\(highFree)) < frames per node (\(frames / nodes))"
            }
            if !(0 <= movablePerNode && movablePerNode < frames / nodes - highFree) {
                return "the movable zone (\(movablePerNode) frames a node) must leave a normal zone above the high watermark (\(highFree)) of the \(frames / nodes) frames a node"
            }
            return nil
        }
    }

    public let configuration: Configuration
    /// The machine's frames, `0..<frameCount` (the zero page is not one of them).
    public var frameCount: Int { configuration.frames }
    /// The shared zero page (Linux: `ZERO_PAGE(0)`, reserved at boot): a
    /// frame of its own just past the machine's frames, so it is never
    /// free, never counted, on no node's lists, and always zero. A read
    /// fault on untouched private anonymous memory maps it read-only; it
    /// holds no reference or mapping count for its mappings (Linux maps it
    /// with a special PTE), and nothing frees or writes it.
    public let zeroFrame: Int32
    public var payloadSize: Int { configuration.payloadSize }
    public let nodes: [MemoryNode]
    let sync: SyncDomain

    let refcounts: UnsafeMutablePointer<Atomic<UInt32>>
    let mapcounts: UnsafeMutablePointer<Atomic<UInt16>>
    let pincounts: UnsafeMutablePointer<Atomic<UInt16>>
    let flagWords: UnsafeMutablePointer<Atomic<UInt16>>
    let generations: UnsafeMutablePointer<Atomic<UInt32>>
    let lruPrev: UnsafeMutablePointer<Int32>
    let lruNext: UnsafeMutablePointer<Int32>
    let owners: UnsafeMutablePointer<UInt32>
    let indices: UnsafeMutablePointer<UInt32>
    let payloads: UnsafeMutableRawPointer
    private let frameWaits: [WaitQueue]
    /// Every huge folio's frames, head first, by head (guarded by its lock).
    let folios: SpinLocked<[Int32: [Int32]]>

    /// Bytes of metadata per frame (the benchmark checks the budget).
    public static let metadataBytesPerFrame = 4 + 2 + 2 + 2 + 4 + 4 + 4 + 4 + 4

    public init(_ configuration: Configuration, sync: SyncDomain) {
        precondition(configuration.problem == nil, configuration.problem ?? "")
        self.configuration = configuration
        self.sync = sync
        let n = configuration.frames
        // One more entry than frames: the zero page's.
        let entries = n + 1
        zeroFrame = Int32(n)
        refcounts = .allocate(capacity: entries)
        mapcounts = .allocate(capacity: entries)
        pincounts = .allocate(capacity: entries)
        flagWords = .allocate(capacity: entries)
        generations = .allocate(capacity: entries)
        lruPrev = .allocate(capacity: entries)
        lruNext = .allocate(capacity: entries)
        owners = .allocate(capacity: entries)
        indices = .allocate(capacity: entries)
        payloads = .allocate(byteCount: entries * configuration.payloadSize, alignment: 16)
        for f in 0..<entries {
            (refcounts + f).initialize(to: Atomic(0))
            (mapcounts + f).initialize(to: Atomic(0))
            (pincounts + f).initialize(to: Atomic(0))
            (flagWords + f).initialize(to: Atomic(0))
            (generations + f).initialize(to: Atomic(1))
        }
        owners.initialize(repeating: 0, count: entries)
        indices.initialize(repeating: 0, count: entries)
        payloads.initializeMemory(as: UInt8.self, repeating: 0, count: entries * configuration.payloadSize)
        // The zero page holds one reference for ever and is allocated.
        refcounts[n].store(1, ordering: .relaxed)
        flagWords[n].store(FrameFlags([.allocated, .zeroPage]).rawValue, ordering: .relaxed)
        let perNode = n / configuration.nodes
        var built: [MemoryNode] = []
        for id in 0..<configuration.nodes {
            let first = id * perNode
            let end = id == configuration.nodes - 1 ? n : first + perNode
            built.append(MemoryNode(id: id, frames: first..<end, movable: configuration.movablePerNode, sync: sync))
        }
        nodes = built
        frameWaits = (0..<64).map { WaitQueue("frame wait \($0)", domain: sync) }
        folios = SpinLocked([:], name: "huge folios", domain: sync)
        for node in nodes { node.buildFreeList(next: lruNext, prev: lruPrev) }
    }

    deinit {
        let n = configuration.frames + 1
        refcounts.deinitialize(count: n).deallocate()
        mapcounts.deinitialize(count: n).deallocate()
        pincounts.deinitialize(count: n).deallocate()
        flagWords.deinitialize(count: n).deallocate()
        generations.deinitialize(count: n).deallocate()
        lruPrev.deallocate()
        lruNext.deallocate()
        owners.deallocate()
        indices.deallocate()
        payloads.deallocate()
    }

    // MARK: - Allocation

    /// The node that holds `frame`.
    @inline(__always)
    public func node(of frame: Int32) -> MemoryNode {
        let perNode = configuration.frames / configuration.nodes
        return nodes[min(Int(frame) / perNode, nodes.count - 1)]
    }

    /// Whether `frame` lies in a movable zone (a long-term pin must move
    /// the page out first; the zero page never does).
    public func isMovable(_ frame: Int32) -> Bool {
        frame != zeroFrame && node(of: frame).zone(of: frame) == .movable
    }

    /// Takes a free frame, preferring `node`, falling back to the others.
    /// Outside reclaim context a node gives no frame at or below its min
    /// watermark; in reclaim context (Linux's PF_MEMALLOC) it may give its
    /// reserve. `movable`: user memory, which may come from (and comes
    /// first from) a movable zone; otherwise only from a normal zone.
    /// Returns nil when nothing can be had: the caller reclaims or fails.
    /// The frame comes back zeroed, with one reference and `flags`.
    public func allocate(preferring node: Int = 0, flags: FrameFlags = [], reserve: Bool? = nil, movable: Bool = true) -> Int32? {
        let useReserve = reserve ?? ExecutionContext.isCurrentInReclaim
        for step in 0..<nodes.count {
            let candidate = nodes[(node + step) % nodes.count]
            if let frame = candidate.popFree(next: lruNext, prev: lruPrev, floor: useReserve ? 0 : configuration.minFree, movable: movable) {
                prepare(frame, flags: flags)
                return frame
            }
        }
        return nil
    }

    /// Takes up to `count` free frames from `node` (then the others), as
    /// `allocate` does, appending them to `frames`. Fewer may come back.
    public func allocate(_ count: Int, preferring node: Int = 0, flags: FrameFlags = [], into frames: inout [Int32]) {
        let useReserve = ExecutionContext.isCurrentInReclaim
        let first = frames.count
        for step in 0..<nodes.count where frames.count - first < count {
            nodes[(node + step) % nodes.count].popFree(
                count - (frames.count - first), into: &frames, next: lruNext, floor: useReserve ? 0 : configuration.minFree)
        }
        for frame in frames[first...] { prepare(frame, flags: flags) }
    }

    private func prepare(_ frame: Int32, flags: FrameFlags) {
        let f = Int(frame)
        // Linux's check_new_page: a page off the free list is neither in
        // use nor locked. A lock bit here is a tryLock on a frame nobody
        // held a reference to (its holder would later unlock the frame's
        // next owner). (A device's late set_dirty or mark_accessed through
        // a stale translation may leave dirty or referenced: overwritten.)
        let stale = FrameFlags(rawValue: flagWords[f].load(ordering: .acquiring))
        precondition(stale.isDisjoint(with: [.allocated, .locked]), "allocating frame \(frame) with flags \(stale) left on it while free")
        refcounts[f].store(1, ordering: .relaxed)
        mapcounts[f].store(0, ordering: .relaxed)
        pincounts[f].store(0, ordering: .relaxed)
        owners[f] = 0
        indices[f] = 0
        (payloads + f * payloadSize).initializeMemory(as: UInt8.self, repeating: 0, count: payloadSize)
        flagWords[f].store(flags.union(.allocated).rawValue, ordering: .releasing)
    }

    /// Drops one reference; the last one frees the frame (Linux: `put_page`),
    /// or the whole huge folio it belongs to. Returns whether it was freed.
    @discardableResult
    public func put(_ frame: Int32) -> Bool {
        let frame = head(of: frame)
        let f = Int(frame)
        let before = refcounts[f].subtract(1, ordering: .acquiringAndReleasing).oldValue
        precondition(before > 0, "put on frame \(frame) with no reference (flags \(flags(of: frame)))")
        guard before == 1 else { return false }
        // Linux's free_page_is_bad (PG_locked among the flags checked at
        // free): the holder of the lock would unlock the frame's next owner.
        precondition(!flags(of: frame).contains(.locked), "freeing frame \(frame) that is locked (flags \(flags(of: frame)))")
        if flags(of: frame).contains(.huge) {
            freeFolio(frame)
            return true
        }
        let node = node(of: frame)
        if flags(of: frame).contains(.onLRU) { node.removeFromLRU(frame, memory: self) }
        precondition(mapcounts[f].load(ordering: .relaxed) == 0, "freeing frame \(frame) that is still mapped")
        precondition(pincounts[f].load(ordering: .relaxed) == 0, "freeing frame \(frame) that is still pinned")
        precondition(!flags(of: frame).contains(.swapCache), "freeing frame \(frame) that is still in the swap cache")
        generations[f].add(1, ordering: .acquiringAndReleasing)
        flagWords[f].store(0, ordering: .releasing)
        node.pushFree(frame, next: lruNext, prev: lruPrev)
        return true
    }

    /// Drops one reference on each frame; frames whose last reference goes
    /// are freed in one lock hold per node (Linux: `release_pages`).
    public func put(_ frames: [Int32]) {
        var dead: [[Int32]] = Array(repeating: [], count: nodes.count)
        for given in frames {
            let frame = head(of: given)
            let f = Int(frame)
            let before = refcounts[f].subtract(1, ordering: .acquiringAndReleasing).oldValue
            precondition(before > 0, "put on frame \(frame) with no reference (flags \(flags(of: frame)))")
            guard before == 1 else { continue }
            precondition(!flags(of: frame).contains(.locked), "freeing frame \(frame) that is locked (flags \(flags(of: frame)))")
            if flags(of: frame).contains(.huge) {
                freeFolio(frame)
                continue
            }
            precondition(mapcounts[f].load(ordering: .relaxed) == 0, "freeing frame \(frame) that is still mapped")
            precondition(pincounts[f].load(ordering: .relaxed) == 0, "freeing frame \(frame) that is still pinned")
            precondition(!flags(of: frame).contains(.swapCache), "freeing frame \(frame) that is still in the swap cache")
            dead[node(of: frame).id].append(frame)
        }
        for (id, batch) in dead.enumerated() where !batch.isEmpty { nodes[id].release(batch, memory: self) }
    }

    /// Takes one more reference (Linux: `get_page`).
    @inline(__always)
    public func get(_ frame: Int32) {
        let frame = head(of: frame)
        let before = refcounts[Int(frame)].add(1, ordering: .relaxed).oldValue
        precondition(before > 0, "get on free frame \(frame)")
    }

    /// Takes a reference unless the frame is free (Linux: `get_page_unless_zero`).
    /// On a tail page of a huge folio the reference is the folio's; a
    /// caller that holds it across a possible split should take it on
    /// `head(of:)` and use that frame throughout.
    public func tryGet(_ frame: Int32) -> Bool {
        let frame = head(of: frame)
        var current = refcounts[Int(frame)].load(ordering: .relaxed)
        while current > 0 {
            let (exchanged, original) = refcounts[Int(frame)].compareExchange(
                expected: current, desired: current + 1, ordering: .acquiringAndReleasing)
            if exchanged { return true }
            current = original
        }
        return false
    }

    // MARK: - Metadata

    /// The head of the huge folio `frame` belongs to, or `frame` itself.
    ///
    /// A tail keeps its head's number in `owners` while it is a tail; a
    /// split clears the tail flag before it gives the frame an owner of its
    /// own, so the flag read again after the owner confirms the pair
    /// (frames split only with every PMD mapping of their folio turned
    /// into migration entries, so callers that found the frame in a present
    /// huge PTE under the page-table lock never race a split at all).
    @inline(__always)
    public func head(of frame: Int32) -> Int32 {
        let f = Int(frame)
        while true {
            guard flagWords[f].load(ordering: .acquiring) & FrameFlags.tail.rawValue != 0 else { return frame }
            let head = Int32(bitPattern: owners[f])
            if flagWords[f].load(ordering: .acquiring) & FrameFlags.tail.rawValue != 0 { return head }
        }
    }

    /// Which of its folio's pages `frame` is (0 for a head or a small page).
    public func subpage(of frame: Int32) -> Int {
        flagWords[Int(frame)].load(ordering: .acquiring) & FrameFlags.tail.rawValue != 0 ? Int(indices[Int(frame)]) : 0
    }

    /// The frame's flags: a tail answers its head's, with `.tail` added.
    @inline(__always) public func flags(of frame: Int32) -> FrameFlags {
        let own = FrameFlags(rawValue: flagWords[Int(frame)].load(ordering: .acquiring))
        guard own.contains(.tail) else { return own }
        return FrameFlags(rawValue: flagWords[Int(head(of: frame))].load(ordering: .acquiring)).union(.tail)
    }
    @inline(__always) public func setFlags(_ set: FrameFlags, on frame: Int32) {
        flagWords[Int(head(of: frame))].bitwiseOr(set.rawValue, ordering: .acquiringAndReleasing)
    }
    @inline(__always) public func clearFlags(_ clear: FrameFlags, on frame: Int32) {
        flagWords[Int(head(of: frame))].bitwiseAnd(~clear.rawValue, ordering: .acquiringAndReleasing)
    }
    /// Clears `flag` and says whether it was set (Linux: `TestClearPage*`).
    @inline(__always) public func testAndClear(_ flag: FrameFlags, on frame: Int32) -> Bool {
        FrameFlags(rawValue: flagWords[Int(head(of: frame))].bitwiseAnd(~flag.rawValue, ordering: .acquiringAndReleasing).oldValue).contains(flag)
    }

    /// The counts of the frame's folio (a tail answers its head's).
    public func refcount(of frame: Int32) -> Int { Int(refcounts[Int(head(of: frame))].load(ordering: .relaxed)) }
    public func mapcount(of frame: Int32) -> Int { Int(mapcounts[Int(head(of: frame))].load(ordering: .relaxed)) }
    public func pincount(of frame: Int32) -> Int { Int(pincounts[Int(head(of: frame))].load(ordering: .relaxed)) }
    /// The frame's own generation (every frame of a folio is freed, and
    /// changes generation, at once).
    public func generation(of frame: Int32) -> UInt32 { generations[Int(frame)].load(ordering: .acquiring) }

    /// One more mapping of the frame's folio (a huge folio's PMD mapping
    /// counts once), and its reference.
    func addMapping(_ frame: Int32) {
        let frame = head(of: frame)
        get(frame)
        mapcounts[Int(frame)].add(1, ordering: .relaxed)
    }

    /// Drops a mapping's count; the caller puts the mapping's reference.
    func removeMapping(_ frame: Int32) {
        let frame = head(of: frame)
        let before = mapcounts[Int(frame)].subtract(1, ordering: .relaxed).oldValue
        precondition(before > 0, "unmapping frame \(frame) that has no mapping")
    }

    func addPin(_ frame: Int32) {
        let frame = head(of: frame)
        get(frame)
        pincounts[Int(frame)].add(1, ordering: .relaxed)
    }

    /// Drops a pin and its reference; returns whether the frame was freed.
    @discardableResult
    func removePin(_ frame: Int32) -> Bool {
        let frame = head(of: frame)
        let before = pincounts[Int(frame)].subtract(1, ordering: .relaxed).oldValue
        precondition(before > 0, "unpinning frame \(frame) that is not pinned")
        return put(frame)
    }

    /// Who owns the frame for the reverse map and at which page index (a
    /// tail: its folio's owner, at the folio's index plus its place in it).
    public func owner(of frame: Int32) -> (owner: UInt32, index: UInt32) {
        let head = head(of: frame)
        guard head != frame else { return (owners[Int(frame)], indices[Int(frame)]) }
        return (owners[Int(head)], indices[Int(head)] &+ UInt32(subpage(of: frame)))
    }

    func setOwner(_ frame: Int32, owner: UInt32, index: UInt32) {
        precondition(!FrameFlags(rawValue: flagWords[Int(frame)].load(ordering: .relaxed)).contains(.tail), "setting the owner of tail frame \(frame)")
        owners[Int(frame)] = owner
        indices[Int(frame)] = index
    }

    // MARK: - Payload

    /// The frame's payload bytes. The caller keeps a reference while using them.
    @inline(__always)
    public func payload(of frame: Int32) -> UnsafeMutableRawBufferPointer {
        UnsafeMutableRawBufferPointer(start: payloads + Int(frame) * payloadSize, count: payloadSize)
    }

    func copyPayload(from source: Int32, to destination: Int32) {
        (payloads + Int(destination) * payloadSize).copyMemory(from: payloads + Int(source) * payloadSize, byteCount: payloadSize)
    }

    // MARK: - The frame lock (PG_locked)

    /// Locks the frame (its folio: a tail locks its head) if it is
    /// unlocked; never sleeps.
    public func tryLock(_ frame: Int32) -> Bool {
        let frame = head(of: frame)
        let old = flagWords[Int(frame)].bitwiseOr(FrameFlags.locked.rawValue, ordering: .acquiring).oldValue
        return old & FrameFlags.locked.rawValue == 0
    }

    /// Locks the frame, sleeping while another holder has it (Linux: `lock_page`).
    /// A holder that keeps a frame locked longer than `lockWatchdog` is a
    /// bug in the lab (frame locks are held across one page operation);
    /// the waiter stops the run with what it knows instead of hanging.
    public static let lockWatchdog: Duration = .seconds(20)

    public func lock(_ frame: Int32, file: StaticString = #fileID, line: UInt = #line) {
        let frame = head(of: frame)
        var waited: Duration = .zero
        while !tryLock(frame) {
            setFlags(.waiters, on: frame)
            let start = sync.now()
            let unlocked = frameWaits[Int(frame) & 63].wait(timeout: .seconds(1), file: file, line: line) {
                !flags(of: frame).contains(.locked)
            }
            if !unlocked {
                waited += sync.now() - start
                precondition(waited < Self.lockWatchdog,
                    "watchdog: frame \(frame) stayed locked for \(waited) (flags \(flags(of: frame)), refs \(refcount(of: frame)), maps \(mapcount(of: frame)), owner \(owner(of: frame))) waiting at \(file):\(line)")
            }
        }
    }

    public func unlock(_ frame: Int32) {
        let frame = head(of: frame)
        let old = flagWords[Int(frame)].bitwiseAnd(~(FrameFlags.locked.rawValue | FrameFlags.waiters.rawValue), ordering: .releasing).oldValue
        precondition(old & FrameFlags.locked.rawValue != 0, "unlocking frame \(frame) that is not locked")
        if old & FrameFlags.waiters.rawValue != 0 { frameWaits[Int(frame) & 63].wakeAll() }
    }

    // MARK: - Counting

    /// A frame that is allocated, as reports show it.
    public struct AllocatedFrame: Sendable, CustomStringConvertible {
        public let frame: PageFrameNumber
        public let flags: FrameFlags
        public let references: Int
        public let mappings: Int
        public let pins: Int
        public var description: String { "\(frame) \(flags) refs \(references) maps \(mappings) pins \(pins)" }
    }

    /// Every allocated frame (for leak reports: after every address space
    /// exited, this must be empty). Not atomic with concurrent changes.
    public func allocatedFrames() -> [AllocatedFrame] {
        (0..<Int32(frameCount)).compactMap { frame in
            let flags = flags(of: frame)
            guard flags.contains(.allocated) else { return nil }
            return AllocatedFrame(
                frame: PageFrameNumber(frame), flags: flags, references: refcount(of: frame), mappings: mapcount(of: frame),
                pins: pincount(of: frame))
        }
    }

    /// Free frames over all nodes.
    public var freeFrames: Int { nodes.reduce(0) { $0 + $1.freeCount } }
}

extension PageFrameNumber {
    init(_ frame: Int32) { self.init(UInt64(frame)) }
    var frame: Int32 { Int32(truncatingIfNeeded: rawValue) }
}
