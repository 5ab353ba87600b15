import LabSync
import Synchronization

/// Which LRU list a frame sits on (Linux: `enum lru_list`, without the
/// unevictable list: pinned frames stay on their list and are skipped).
public enum LRUList: Int, Sendable, CaseIterable {
    case inactiveAnonymous, activeAnonymous, inactiveFile, activeFile

    static func of(anonymous: Bool, active: Bool) -> LRUList {
        switch (anonymous, active) {
        case (true, false): .inactiveAnonymous
        case (true, true): .activeAnonymous
        case (false, false): .inactiveFile
        case (false, true): .activeFile
        }
    }
}

/// The zones of a node (Linux: `enum zone_type`, the two that matter to a
/// secondary MMU). User memory is allocated from ZONE_MOVABLE first, which
/// holds only pages that can be migrated (memory hot-unplug and
/// contiguous allocations rely on it); a long-term pin (FOLL_LONGTERM)
/// therefore moves a page out of it first.
public enum Zone: Int, Sendable, CaseIterable {
    case normal, movable
}

/// One node of physical memory: a contiguous run of frames with its own
/// free lists (one per zone) and LRU lists under one spin lock (Linux: a
/// `pglist_data` with its zones' free lists and the `lruvec`).
public final class MemoryNode: @unchecked Sendable {
    // @unchecked: every `var` is guarded by `lock`; the links live in
    // PhysicalMemory's arrays and are guarded by this node's lock too.
    public let id: Int
    public let frames: Range<Int>
    /// The first frame of the node's ZONE_MOVABLE (its upper part);
    /// `frames.upperBound` when it has none.
    public let movableStart: Int
    let lock: SpinLock

    /// Free lists by zone (`Zone.rawValue`): their heads and lengths.
    /// Lock-guarded; fixed-size raw storage like the LRU lists below (as
    /// arrays, two exclusivity checks and a uniqueness check per frame
    /// were half of a bulk fault-in's instructions).
    private let freeHeads = UnsafeMutablePointer<Int32>.allocate(capacity: Zone.allCases.count)
    private let zoneFree = UnsafeMutablePointer<Int>.allocate(capacity: Zone.allCases.count)
    @exclusivity(unchecked) private var freeCountStorage = 0
    /// `freeCountStorage` published for lock-free reads (watermark checks).
    private let freeCountMirror = Atomic<Int>(0)
    // The LRU lists' heads, tails and lengths by `LRUList.rawValue`.
    // Lock-guarded, so the runtime's exclusivity checks on them could never
    // fail; they were two thirds of a munmap's instructions (each a
    // thread-local lookup), and the arrays' uniqueness checks most of the
    // rest of a link: raw storage, indexed only by an enum's raw value.
    private let heads = UnsafeMutablePointer<Int32>.allocate(capacity: LRUList.allCases.count)
    private let tails = UnsafeMutablePointer<Int32>.allocate(capacity: LRUList.allCases.count)
    private let counts = UnsafeMutablePointer<Int>.allocate(capacity: LRUList.allCases.count)

    init(id: Int, frames: Range<Int>, movable: Int = 0, sync: SyncDomain) {
        precondition(movable >= 0 && movable < frames.count, "a node's movable zone must leave it a normal one")
        self.id = id
        self.frames = frames
        movableStart = frames.upperBound - movable
        lock = SpinLock("node \(id)", domain: sync)
        freeHeads.initialize(repeating: -1, count: Zone.allCases.count)
        zoneFree.initialize(repeating: 0, count: Zone.allCases.count)
        heads.initialize(repeating: -1, count: LRUList.allCases.count)
        tails.initialize(repeating: -1, count: LRUList.allCases.count)
        counts.initialize(repeating: 0, count: LRUList.allCases.count)
    }

    deinit {
        for storage in [UnsafeMutableRawPointer(freeHeads), UnsafeMutableRawPointer(zoneFree), UnsafeMutableRawPointer(heads),
                        UnsafeMutableRawPointer(tails), UnsafeMutableRawPointer(counts)] {
            storage.deallocate()
        }
    }

    /// The zone `frame` (one of this node's) lies in.
    @inline(__always)
    func zone(of frame: Int32) -> Zone { Int(frame) >= movableStart ? .movable : .normal }

    /// Links every frame into its zone's free list, lowest frame first out.
    func buildFreeList(next: UnsafeMutablePointer<Int32>, prev: UnsafeMutablePointer<Int32>) {
        lock.withLock {
            freeHeads.update(repeating: -1, count: Zone.allCases.count)
            zoneFree.update(repeating: 0, count: Zone.allCases.count)
            for f in frames.reversed() {
                let z = zone(of: Int32(f)).rawValue
                next[f] = freeHeads[z]
                prev[f] = -1
                freeHeads[z] = Int32(f)
                zoneFree[z] += 1
            }
            freeCountStorage = frames.count
            freeCountMirror.store(freeCountStorage, ordering: .relaxed)
        }
    }

    /// Free frames on this node now (read without the lock; may be a moment old).
    public var freeCount: Int { freeCountMirror.load(ordering: .relaxed) }

    /// Free frames of one zone now.
    public func freeCount(in zone: Zone) -> Int { lock.withLock { zoneFree[zone.rawValue] } }

    /// The zones an allocation may take from, in order: a movable one
    /// (user memory) tries ZONE_MOVABLE first and falls back to the normal
    /// zone; anything else only the normal zone (Linux's zonelist).
    private func zones(movable: Bool) -> [Zone] { movable ? Self.movableZones : Self.normalZones }
    private static let movableZones: [Zone] = [.movable, .normal]
    private static let normalZones: [Zone] = [.normal]

    /// Takes one free frame off zone `z`'s list (lock held).
    private func take(from z: Int, next: UnsafeMutablePointer<Int32>) -> Int32 {
        let frame = freeHeads[z]
        freeHeads[z] = next[Int(frame)]
        next[Int(frame)] = -1
        zoneFree[z] -= 1
        freeCountStorage -= 1
        return frame
    }

    /// Takes a free frame, keeping `floor` frames of the node free.
    func popFree(next: UnsafeMutablePointer<Int32>, prev: UnsafeMutablePointer<Int32>, floor: Int, movable: Bool = true) -> Int32? {
        lock.withLock {
            guard freeCountStorage > floor else { return nil }
            for z in zones(movable: movable) where freeHeads[z.rawValue] >= 0 {
                let frame = take(from: z.rawValue, next: next)
                freeCountMirror.store(freeCountStorage, ordering: .relaxed)
                return frame
            }
            return nil
        }
    }

    /// Takes up to `count` free frames at once, keeping `floor` free.
    func popFree(_ count: Int, into frames: inout [Int32], next: UnsafeMutablePointer<Int32>, floor: Int, movable: Bool = true) {
        lock.withLock {
            var taken = 0
            for z in zones(movable: movable) {
                while taken < count, freeCountStorage > floor, freeHeads[z.rawValue] >= 0 {
                    frames.append(take(from: z.rawValue, next: next))
                    taken += 1
                }
            }
            freeCountMirror.store(freeCountStorage, ordering: .relaxed)
        }
    }

    /// Puts a frame on its zone's free list (lock held).
    private func link(free frame: Int32, next: UnsafeMutablePointer<Int32>, prev: UnsafeMutablePointer<Int32>) {
        let z = zone(of: frame).rawValue
        next[Int(frame)] = freeHeads[z]
        prev[Int(frame)] = -1
        freeHeads[z] = frame
        zoneFree[z] += 1
        freeCountStorage += 1
    }

    func pushFree(_ frame: Int32, next: UnsafeMutablePointer<Int32>, prev: UnsafeMutablePointer<Int32>) {
        lock.withLock {
            link(free: frame, next: next, prev: prev)
            freeCountMirror.store(freeCountStorage, ordering: .relaxed)
        }
    }

    /// Frees a batch of frames whose last reference is gone, under one lock
    /// hold: off the LRU, generation bumped, flags cleared, onto the free list.
    func release(_ frames: [Int32], memory: PhysicalMemory) {
        lock.withLock {
            for frame in frames {
                unlinkIfListed(frame, memory: memory)
                memory.generations[Int(frame)].add(1, ordering: .acquiringAndReleasing)
                memory.flagWords[Int(frame)].store(0, ordering: .releasing)
                link(free: frame, next: memory.lruNext, prev: memory.lruPrev)
            }
            freeCountMirror.store(freeCountStorage, ordering: .relaxed)
        }
    }

    /// Puts a batch of fresh frames on the head of their LRU lists at once.
    func addToLRU(_ frames: [Int32], memory: PhysicalMemory) {
        frames.withUnsafeBufferPointer { addToLRU($0, memory: memory) }
    }

    /// Adds frames (all of this node, none on a list) to the head of their
    /// inactive lists, under one lock hold.
    func addToLRU(_ frames: UnsafeBufferPointer<Int32>, memory: PhysicalMemory) {
        lock.withLock {
            for frame in frames {
                let flags = memory.flags(of: frame)
                precondition(!flags.contains(.onLRU), "frame \(frame) is already on an LRU list")
                link(frame, at: LRUList.of(anonymous: flags.onAnonymousLRU, active: false), memory: memory)
                memory.setFlags(.onLRU, on: frame)
            }
        }
    }

    // MARK: LRU

    /// Frames on each LRU list.
    public var lruCounts: [LRUList: Int] {
        lock.withLock {
            var result: [LRUList: Int] = [:]
            for list in LRUList.allCases { result[list] = counts[list.rawValue] }
            return result
        }
    }

    /// Adds a frame at the head (most recently used end) of its list.
    func addToLRU(_ frame: Int32, memory: PhysicalMemory, active: Bool = false) {
        lock.withLock {
            let flags = memory.flags(of: frame)
            precondition(!flags.contains(.onLRU), "frame \(frame) is already on an LRU list")
            let list = LRUList.of(anonymous: flags.onAnonymousLRU, active: active)
            link(frame, at: list, memory: memory)
            memory.setFlags(active ? [.onLRU, .active] : [.onLRU], on: frame)
        }
    }

    /// Marks a frame lazily freed (MADV_FREE; Linux: `folio_mark_lazyfree`,
    /// `lru_lazyfree`): off the active list, not referenced, and onto the
    /// head of the inactive file list if it is on an LRU list at all (an
    /// isolated frame goes back to that list when it is put back). The
    /// caller holds the frame's lock.
    func markLazyFree(_ frame: Int32, memory: PhysicalMemory) {
        lock.withLock {
            let listed = memory.flags(of: frame).contains(.onLRU)
            unlinkIfListed(frame, memory: memory)
            memory.clearFlags([.active, .referenced], on: frame)
            memory.setFlags(.lazyFree, on: frame)
            if listed {
                link(frame, at: .inactiveFile, memory: memory)
                memory.setFlags(.onLRU, on: frame)
            }
        }
    }

    func removeFromLRU(_ frame: Int32, memory: PhysicalMemory) {
        lock.withLock { unlinkIfListed(frame, memory: memory) }
    }

    /// Takes up to `count` frames from the tail (least recently used end) of
    /// `list`, off the LRU, each with a reference: Linux's `isolate_lru_folios`.
    /// Frames whose last reference is being dropped are passed over.
    func isolate(_ count: Int, from list: LRUList, memory: PhysicalMemory) -> [Int32] {
        lock.withLock {
            var taken: [Int32] = []
            var cursor = tails[list.rawValue]
            var looked = 0
            while cursor >= 0, taken.count < count, looked < count * 4 {
                let frame = cursor
                cursor = memory.lruPrev[Int(frame)]
                looked += 1
                guard memory.tryGet(frame) else { continue }
                unlink(frame, from: list, memory: memory)
                memory.clearFlags([.onLRU, .active], on: frame)
                taken.append(frame)
            }
            return taken
        }
    }

    /// Takes one given frame off its LRU list with a reference, if it is on
    /// one: the caller then owns its isolation. Returns false when the frame
    /// is not on an LRU list (someone else isolated it, or it is not
    /// reclaimable) or is being freed.
    func isolate(_ frame: Int32, memory: PhysicalMemory) -> Bool {
        lock.withLock {
            guard memory.flags(of: frame).contains(.onLRU), memory.tryGet(frame) else { return false }
            unlinkIfListed(frame, memory: memory)
            return true
        }
    }

    /// Puts an isolated frame back on the list its flags and `active` say.
    func putBack(_ frame: Int32, memory: PhysicalMemory, active: Bool) {
        lock.withLock {
            let list = LRUList.of(anonymous: memory.flags(of: frame).onAnonymousLRU, active: active)
            link(frame, at: list, memory: memory)
            memory.setFlags(active ? [.onLRU, .active] : [.onLRU], on: frame)
        }
    }

    /// Moves up to `count` frames from the active tail to the inactive head
    /// (Linux: `shrink_active_list`, without the referenced check).
    func deactivate(_ count: Int, anonymous: Bool, memory: PhysicalMemory) -> Int {
        lock.withLock {
            let from: LRUList = anonymous ? .activeAnonymous : .activeFile
            let to: LRUList = anonymous ? .inactiveAnonymous : .inactiveFile
            var moved = 0
            while moved < count, tails[from.rawValue] >= 0 {
                let frame = tails[from.rawValue]
                unlink(frame, from: from, memory: memory)
                link(frame, at: to, memory: memory)
                memory.clearFlags(.active, on: frame)
                moved += 1
            }
            return moved
        }
    }

    private func unlinkIfListed(_ frame: Int32, memory: PhysicalMemory) {
        let flags = memory.flags(of: frame)
        guard flags.contains(.onLRU) else { return }
        unlink(frame, from: LRUList.of(anonymous: flags.onAnonymousLRU, active: flags.contains(.active)), memory: memory)
        memory.clearFlags([.onLRU, .active], on: frame)
    }

    private func link(_ frame: Int32, at list: LRUList, memory: PhysicalMemory) {
        let l = list.rawValue
        memory.lruPrev[Int(frame)] = -1
        memory.lruNext[Int(frame)] = heads[l]
        if heads[l] >= 0 { memory.lruPrev[Int(heads[l])] = frame } else { tails[l] = frame }
        heads[l] = frame
        counts[l] += 1
    }

    private func unlink(_ frame: Int32, from list: LRUList, memory: PhysicalMemory) {
        let l = list.rawValue
        let p = memory.lruPrev[Int(frame)]
        let n = memory.lruNext[Int(frame)]
        if p >= 0 { memory.lruNext[Int(p)] = n } else { heads[l] = n }
        if n >= 0 { memory.lruPrev[Int(n)] = p } else { tails[l] = p }
        memory.lruPrev[Int(frame)] = -1
        memory.lruNext[Int(frame)] = -1
        counts[l] -= 1
    }
}
