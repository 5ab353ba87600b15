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

/// One node of physical memory: a contiguous run of frames with its own
/// free list and LRU lists under one spin lock (Linux: a `pglist_data` with
/// its zone's free lists and the `lruvec`).
public final class MemoryNode: @unchecked Sendable {
    // @unchecked: every `var` is guarded by `lock`; the links live in
    // PhysicalMemory's arrays and are guarded by this node's lock too.
    public let id: Int
    public let frames: Range<Int>
    let lock: SpinLock

    private var freeHead: Int32 = -1
    private var freeCountStorage = 0
    /// `freeCountStorage` published for lock-free reads (watermark checks).
    private let freeCountMirror = Atomic<Int>(0)
    private var heads = [Int32](repeating: -1, count: LRUList.allCases.count)
    private var tails = [Int32](repeating: -1, count: LRUList.allCases.count)
    private var counts = [Int](repeating: 0, count: LRUList.allCases.count)

    init(id: Int, frames: Range<Int>, sync: SyncDomain) {
        self.id = id
        self.frames = frames
        lock = SpinLock("node \(id)", domain: sync)
    }

    /// Links every frame into the free list, lowest frame first out.
    func buildFreeList(next: UnsafeMutablePointer<Int32>, prev: UnsafeMutablePointer<Int32>) {
        lock.withLock {
            freeHead = -1
            for f in frames.reversed() {
                next[f] = freeHead
                prev[f] = -1
                freeHead = Int32(f)
            }
            freeCountStorage = frames.count
            freeCountMirror.store(freeCountStorage, ordering: .relaxed)
        }
    }

    /// Free frames on this node now (read without the lock; may be a moment old).
    public var freeCount: Int { freeCountMirror.load(ordering: .relaxed) }

    func popFree(next: UnsafeMutablePointer<Int32>, prev: UnsafeMutablePointer<Int32>, floor: Int) -> Int32? {
        lock.withLock {
            guard freeCountStorage > floor, freeHead >= 0 else { return nil }
            let frame = freeHead
            freeHead = next[Int(frame)]
            next[Int(frame)] = -1
            freeCountStorage -= 1
            freeCountMirror.store(freeCountStorage, ordering: .relaxed)
            return frame
        }
    }

    /// Takes up to `count` free frames at once, keeping `floor` free.
    func popFree(_ count: Int, into frames: inout [Int32], next: UnsafeMutablePointer<Int32>, floor: Int) {
        lock.withLock {
            var taken = 0
            while taken < count, freeCountStorage > floor, freeHead >= 0 {
                let frame = freeHead
                freeHead = next[Int(frame)]
                next[Int(frame)] = -1
                freeCountStorage -= 1
                frames.append(frame)
                taken += 1
            }
            freeCountMirror.store(freeCountStorage, ordering: .relaxed)
        }
    }

    func pushFree(_ frame: Int32, next: UnsafeMutablePointer<Int32>, prev: UnsafeMutablePointer<Int32>) {
        lock.withLock {
            next[Int(frame)] = freeHead
            prev[Int(frame)] = -1
            freeHead = frame
            freeCountStorage += 1
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
                memory.lruNext[Int(frame)] = freeHead
                memory.lruPrev[Int(frame)] = -1
                freeHead = frame
                freeCountStorage += 1
            }
            freeCountMirror.store(freeCountStorage, ordering: .relaxed)
        }
    }

    /// Puts a batch of fresh frames on the head of their LRU lists at once.
    func addToLRU(_ frames: [Int32], memory: PhysicalMemory) {
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
