/// A set of half-open intervals `[start, end)`, each carrying a 32-bit
/// handle, answering "which intervals overlap `[qs, qe)`" in
/// O(log n + k) node visits.
///
/// Linux keeps interval notifiers in an augmented red-black tree. This is the
/// same idea laid out for caches: a B+tree ordered by `(start, handle)` whose
/// internal entries carry each child's smallest key and largest end. With a
/// fanout of 32 a million intervals sit four or five levels deep, and a
/// lookup touches a handful of contiguous node arrays instead of twenty
/// scattered tree nodes.
///
/// Why the search is output-sensitive: children are sorted by start, so every
/// child before the last one whose smallest start is below `qe` holds only
/// intervals that start below `qe`; if such a child's largest end is above
/// `qs`, it holds at least one overlap. Only the last candidate child per
/// level can be visited in vain.
///
/// Nodes are never merged on removal, only freed when empty, so the height is
/// bounded by the peak population, not the current one.
///
/// Not thread-safe: the owner serialises mutations against lookups
/// (`AddressSpaceNotifiers` mutates only while no invalidation is active).
public final class IntervalTree {
    /// Entries per node; a node briefly holds one more before it splits.
    public static let fanout = 32
    private static let slots = fanout + 1
    private static let maxHeight = 24

    // The owner serialises every access (see above), so the runtime's
    // dynamic exclusivity checks are switched off: on a dispatch's lookup
    // they cost more than the walk.
    // Per slot (node * slots + i). Leaf: the interval. Internal: the child's
    // smallest key (start, handle) and largest end.
    @exclusivity(unchecked) private var starts: UnsafeMutablePointer<UInt64>
    @exclusivity(unchecked) private var ends: UnsafeMutablePointer<UInt64>
    @exclusivity(unchecked) private var handles: UnsafeMutablePointer<UInt32>
    @exclusivity(unchecked) private var children: UnsafeMutablePointer<Int32>
    // Per node.
    @exclusivity(unchecked) private var counts: UnsafeMutablePointer<Int32>
    @exclusivity(unchecked) private var levels: UnsafeMutablePointer<UInt8>

    @exclusivity(unchecked) private var nodeCapacity: Int
    @exclusivity(unchecked) private var nodesInUse = 0
    @exclusivity(unchecked) private var freeNodes: [Int32] = []
    @exclusivity(unchecked) private var root: Int32 = -1

    /// Number of intervals stored.
    @exclusivity(unchecked) public private(set) var count = 0

    public init(initialNodeCapacity: Int = 16) {
        nodeCapacity = max(initialNodeCapacity, 1)
        let slotCount = nodeCapacity * Self.slots
        starts = .allocate(capacity: slotCount)
        ends = .allocate(capacity: slotCount)
        handles = .allocate(capacity: slotCount)
        children = .allocate(capacity: slotCount)
        counts = .allocate(capacity: nodeCapacity)
        levels = .allocate(capacity: nodeCapacity)
    }

    deinit {
        starts.deallocate()
        ends.deallocate()
        handles.deallocate()
        children.deallocate()
        counts.deallocate()
        levels.deallocate()
    }

    public var isEmpty: Bool { count == 0 }

    /// Levels from the root to the leaves (0 when empty).
    public var height: Int { root < 0 ? 0 : Int(levels[Int(root)]) + 1 }

    // MARK: Lookup

    /// Calls `body` with the handle of every interval that overlaps
    /// `[start, end)`, in ascending `(start, handle)` order.
    @inline(__always)
    public func forEachOverlap(start: UInt64, end: UInt64, _ body: (UInt32) throws -> Void) rethrows {
        guard root >= 0, start < end else { return }
        try visit(root, start, end, body)
    }

    private func visit(_ node: Int32, _ qs: UInt64, _ qe: UInt64, _ body: (UInt32) throws -> Void) rethrows {
        let base = Int(node) * Self.slots
        let n = Int(counts[Int(node)])
        if levels[Int(node)] == 0 {
            for i in base..<(base + n) {
                if starts[i] >= qe { break }
                if ends[i] > qs { try body(handles[i]) }
            }
        } else {
            for i in base..<(base + n) {
                if starts[i] >= qe { break }
                if ends[i] > qs { try visit(children[i], qs, qe, body) }
            }
        }
    }

    /// Whether any interval overlaps `[start, end)`.
    public func overlapsAny(start: UInt64, end: UInt64) -> Bool {
        var found = false
        forEachOverlap(start: start, end: end) { _ in found = true }
        return found
    }

    /// The handles overlapping `[start, end)`.
    public func overlaps(start: UInt64, end: UInt64) -> [UInt32] {
        var result: [UInt32] = []
        forEachOverlap(start: start, end: end) { result.append($0) }
        return result
    }

    // MARK: Insert

    /// Adds `[start, end)` with `handle`. The pair `(start, handle)` must not
    /// already be present.
    public func insert(start: UInt64, end: UInt64, handle: UInt32) {
        precondition(start < end, "empty interval [\(start), \(end))")
        count += 1
        if root < 0 {
            root = allocateNode(level: 0)
            setSlot(root, 0, start, end, handle, -1)
            counts[Int(root)] = 1
            return
        }
        var pathNodes = PathStack()
        var pathIndex = PathStack()
        let node = descend(to: start, handle, &pathNodes, &pathIndex)
        let position = upperBound(node, start, handle)
        insertSlot(node, at: position, start, end, handle, -1)

        // Walk back up: refresh the summaries, split what overflowed.
        var current = node
        while !pathNodes.isEmpty {
            let parent = pathNodes.pop()
            let index = Int(pathIndex.pop())
            if Int(counts[Int(current)]) > Self.fanout {
                let sibling = split(current)
                writeSummary(of: current, into: parent, at: index)
                insertSummary(of: sibling, into: parent, at: index + 1)
            } else {
                let slot = Int(parent) * Self.slots + index
                let first = Int(current) * Self.slots
                let newEnd = max(ends[slot], end)
                if starts[slot] == starts[first] && handles[slot] == handles[first] && ends[slot] == newEnd {
                    return  // nothing above can change
                }
                starts[slot] = starts[first]
                handles[slot] = handles[first]
                ends[slot] = newEnd
            }
            current = parent
        }
        if Int(counts[Int(current)]) > Self.fanout {
            // The root split: grow a level.
            let sibling = split(current)
            let newRoot = allocateNode(level: levels[Int(current)] + 1)
            counts[Int(newRoot)] = 0
            insertSummary(of: current, into: newRoot, at: 0)
            insertSummary(of: sibling, into: newRoot, at: 1)
            root = newRoot
        }
    }

    // MARK: Remove

    /// Removes the interval `[start, end)` with `handle`; returns whether it was present.
    @discardableResult
    public func remove(start: UInt64, end: UInt64, handle: UInt32) -> Bool {
        guard root >= 0 else { return false }
        var pathNodes = PathStack()
        var pathIndex = PathStack()
        let node = descend(to: start, handle, &pathNodes, &pathIndex)
        let position = upperBound(node, start, handle) - 1
        let slot = Int(node) * Self.slots + position
        guard position >= 0, starts[slot] == start, handles[slot] == handle, ends[slot] == end else {
            return false
        }
        removeSlot(node, at: position)
        count -= 1

        var current = node
        while !pathNodes.isEmpty {
            let parent = pathNodes.pop()
            let index = Int(pathIndex.pop())
            if counts[Int(current)] == 0 {
                freeNode(current)
                removeSlot(parent, at: index)
            } else {
                writeSummary(of: current, into: parent, at: index)
            }
            current = parent
        }
        if counts[Int(root)] == 0 {
            freeNode(root)
            root = -1
        } else {
            while levels[Int(root)] > 0 && counts[Int(root)] == 1 {
                let only = children[Int(root) * Self.slots]
                freeNode(root)
                root = only
            }
        }
        return true
    }

    /// Removes everything.
    public func removeAll() {
        root = -1
        count = 0
        nodesInUse = 0
        freeNodes.removeAll(keepingCapacity: true)
    }

    // MARK: Invariants

    /// Checks every structural invariant; returns a description of the first
    /// broken one, or nil. Used by tests after every mutation.
    public func invariantViolation() -> String? {
        guard root >= 0 else { return count == 0 ? nil : "empty root but count \(count)" }
        var seen = 0
        var previous: (UInt64, UInt32)? = nil
        func check(_ node: Int32, level: Int) -> (min: (UInt64, UInt32), maxEnd: UInt64)? {
            let n = Int(counts[Int(node)])
            guard Int(levels[Int(node)]) == level else { return nil }
            guard n >= 1 && n <= Self.fanout else { return nil }
            let base = Int(node) * Self.slots
            var maxEnd: UInt64 = 0
            for i in base..<(base + n) {
                if level == 0 {
                    let key = (starts[i], handles[i])
                    if let p = previous, !(p < key) { return nil }
                    if starts[i] >= ends[i] { return nil }
                    previous = key
                    seen += 1
                } else {
                    guard let sub = check(children[i], level: level - 1) else { return nil }
                    if sub.min != (starts[i], handles[i]) || sub.maxEnd != ends[i] { return nil }
                }
                maxEnd = max(maxEnd, ends[i])
            }
            return ((starts[base], handles[base]), maxEnd)
        }
        guard check(root, level: Int(levels[Int(root)])) != nil else {
            return "node ordering, bounds or summaries are inconsistent"
        }
        return seen == count ? nil : "counted \(seen) leaf entries, expected \(count)"
    }

    // MARK: Node internals

    /// Walks from the root to the leaf that holds, or would hold, the key
    /// `(start, handle)`, recording each internal node and the child taken.
    private func descend(to start: UInt64, _ handle: UInt32, _ nodes: inout PathStack, _ indices: inout PathStack) -> Int32 {
        var node = root
        while levels[Int(node)] > 0 {
            let i = childIndex(node, start, handle)
            nodes.push(node)
            indices.push(Int32(i))
            node = children[Int(node) * Self.slots + i]
        }
        return node
    }

    /// Index of the last entry whose key is <= (start, handle), or 0.
    private func childIndex(_ node: Int32, _ start: UInt64, _ handle: UInt32) -> Int {
        max(upperBound(node, start, handle) - 1, 0)
    }

    /// Index of the first entry whose key is > (start, handle).
    private func upperBound(_ node: Int32, _ start: UInt64, _ handle: UInt32) -> Int {
        let base = Int(node) * Self.slots
        var low = 0
        var high = Int(counts[Int(node)])
        while low < high {
            let mid = (low + high) / 2
            let s = starts[base + mid]
            if s < start || (s == start && handles[base + mid] <= handle) {
                low = mid + 1
            } else {
                high = mid
            }
        }
        return low
    }

    private func setSlot(_ node: Int32, _ i: Int, _ s: UInt64, _ e: UInt64, _ h: UInt32, _ c: Int32) {
        let slot = Int(node) * Self.slots + i
        starts[slot] = s
        ends[slot] = e
        handles[slot] = h
        children[slot] = c
    }

    private func insertSlot(_ node: Int32, at i: Int, _ s: UInt64, _ e: UInt64, _ h: UInt32, _ c: Int32) {
        let base = Int(node) * Self.slots
        let n = Int(counts[Int(node)])
        precondition(n < Self.slots, "node overflow")
        if i < n {
            (starts + base + i + 1).update(from: starts + base + i, count: n - i)
            (ends + base + i + 1).update(from: ends + base + i, count: n - i)
            (handles + base + i + 1).update(from: handles + base + i, count: n - i)
            (children + base + i + 1).update(from: children + base + i, count: n - i)
        }
        setSlot(node, i, s, e, h, c)
        counts[Int(node)] = Int32(n + 1)
    }

    private func removeSlot(_ node: Int32, at i: Int) {
        let base = Int(node) * Self.slots
        let n = Int(counts[Int(node)])
        let tail = n - i - 1
        if tail > 0 {
            (starts + base + i).update(from: starts + base + i + 1, count: tail)
            (ends + base + i).update(from: ends + base + i + 1, count: tail)
            (handles + base + i).update(from: handles + base + i + 1, count: tail)
            (children + base + i).update(from: children + base + i + 1, count: tail)
        }
        counts[Int(node)] = Int32(n - 1)
    }

    /// Moves the upper half of `node` into a new sibling and returns it.
    private func split(_ node: Int32) -> Int32 {
        let sibling = allocateNode(level: levels[Int(node)])
        let n = Int(counts[Int(node)])
        let keep = n / 2
        let moved = n - keep
        let from = Int(node) * Self.slots + keep
        let to = Int(sibling) * Self.slots
        (starts + to).update(from: starts + from, count: moved)
        (ends + to).update(from: ends + from, count: moved)
        (handles + to).update(from: handles + from, count: moved)
        (children + to).update(from: children + from, count: moved)
        counts[Int(node)] = Int32(keep)
        counts[Int(sibling)] = Int32(moved)
        return sibling
    }

    private func summaryEnd(_ node: Int32) -> UInt64 {
        let base = Int(node) * Self.slots
        var maxEnd: UInt64 = 0
        for i in base..<(base + Int(counts[Int(node)])) { maxEnd = max(maxEnd, ends[i]) }
        return maxEnd
    }

    private func writeSummary(of child: Int32, into parent: Int32, at i: Int) {
        let first = Int(child) * Self.slots
        setSlot(parent, i, starts[first], summaryEnd(child), handles[first], child)
    }

    private func insertSummary(of child: Int32, into parent: Int32, at i: Int) {
        let first = Int(child) * Self.slots
        insertSlot(parent, at: i, starts[first], summaryEnd(child), handles[first], child)
    }

    private func allocateNode(level: UInt8) -> Int32 {
        let node: Int32
        if let reused = freeNodes.popLast() {
            node = reused
        } else {
            if nodesInUse == nodeCapacity { grow() }
            node = Int32(nodesInUse)
            nodesInUse += 1
        }
        counts[Int(node)] = 0
        levels[Int(node)] = level
        return node
    }

    private func freeNode(_ node: Int32) {
        counts[Int(node)] = 0
        freeNodes.append(node)
    }

    private func grow() {
        let newCapacity = nodeCapacity * 2
        func regrow<T>(_ old: UnsafeMutablePointer<T>, _ used: Int, _ capacity: Int) -> UnsafeMutablePointer<T> {
            let fresh = UnsafeMutablePointer<T>.allocate(capacity: capacity)
            fresh.moveInitialize(from: old, count: used)
            old.deallocate()
            return fresh
        }
        let usedSlots = nodeCapacity * Self.slots
        starts = regrow(starts, usedSlots, newCapacity * Self.slots)
        ends = regrow(ends, usedSlots, newCapacity * Self.slots)
        handles = regrow(handles, usedSlots, newCapacity * Self.slots)
        children = regrow(children, usedSlots, newCapacity * Self.slots)
        counts = regrow(counts, nodeCapacity, newCapacity)
        levels = regrow(levels, nodeCapacity, newCapacity)
        nodeCapacity = newCapacity
    }
}

/// A fixed-size stack for the root-to-leaf path, kept off the heap.
private struct PathStack {
    private var items: (Int32, Int32, Int32, Int32, Int32, Int32, Int32, Int32,
                        Int32, Int32, Int32, Int32, Int32, Int32, Int32, Int32,
                        Int32, Int32, Int32, Int32, Int32, Int32, Int32, Int32) =
        (0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0)
    private var depth = 0

    var isEmpty: Bool { depth == 0 }

    mutating func push(_ value: Int32) {
        precondition(depth < 24, "interval tree deeper than 24 levels")
        withUnsafeMutableBytes(of: &items) { $0.storeBytes(of: value, toByteOffset: depth * 4, as: Int32.self) }
        depth += 1
    }

    mutating func pop() -> Int32 {
        depth -= 1
        return withUnsafeBytes(of: &items) { $0.load(fromByteOffset: depth * 4, as: Int32.self) }
    }
}
