#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// The lab's lockdep: records, per thread, the order in which locks of a
/// known class are taken, keeps the graph of "held A while taking B" over
/// the whole run, and reports the first time an acquisition would close a
/// cycle in it, before anything deadlocks (Linux: `kernel/locking/lockdep.c`,
/// `check_prev_add` and its circular-dependency splat).
///
/// What it covers: every `SpinLock`, `SleepingLock` and `SleepingRWLock`
/// made with an `orderClass` (the primary's page-table lock, mmap lock and
/// notifier lock; every lock a plugin makes with `lock_create`), and two
/// pseudo-locks that stand for waits: `reclaim` is held while a thread
/// reclaims (kswapd, direct reclaim) and taken for an instant by every
/// allocation that may reclaim (Linux's `fs_reclaim` map), so a lock taken in
/// a `[reclaim]` callback and also held around such an allocation is a cycle
/// through it. What it does not: a lock of the same class nested in itself
/// (two page-table locks, two VM locks) is not an edge (Linux would need a
/// nesting annotation; none exists here); a successful `tryLock` adds no
/// edge into the lock (it cannot wait), only out of it; reader and writer
/// acquisitions count alike (the lab's reader-writer lock is fair: a waiting
/// writer holds new readers back, so read-read inversions do deadlock).
///
/// Cost: nothing for a lock without a class; for one with a class, when
/// validation is on, a thread-local append and, per lock already held, one
/// probe of a thread-local edge cache. Only an edge never seen before takes
/// the validator's mutex (a raw one: recording must not recurse into the
/// checks).
public final class LockOrderValidator: @unchecked Sendable {
    // @unchecked: every var is touched only with `mutex` held.
    /// Each cycle found, once.
    public let violations: ReportLog<LockOrderViolation>
    /// Classes past this many are not tracked (a plugin naming a lock per
    /// object would otherwise grow the graph without bound); counted in
    /// `untrackedClasses`.
    public static let maximumClasses = 4_096

    private let mutex = UnsafeMutablePointer<pthread_mutex_t>.allocate(capacity: 1)
    private var classes: [String: LockClass] = [:]
    private var byID: [UInt32: LockClass] = [:]
    private var edges: [UInt32: [UInt32: Edge]] = [:]
    private var reported: Set<[UInt32]> = []
    private var untracked = 0
    /// The `reclaim` pseudo-lock (Linux: `__fs_reclaim_map`). Set once, in init.
    public private(set) var reclaim: LockClass! = nil
    private(set) var reclaimHook: LockOrderHook! = nil

    /// Where an edge was first seen: the thread, and the two acquisitions.
    struct Edge {
        var from: String
        var to: String
        var thread: String
    }

    public init(capacity: Int = 1_000) {
        violations = ReportLog(capacity: capacity)
        pthread_mutex_init(mutex, nil)
        let reclaim = LockClass(name: "reclaim", isPseudo: true, validator: self)
        byID[reclaim.id] = reclaim
        self.reclaim = reclaim
        reclaimHook = LockOrderHook(reclaim)
    }

    deinit {
        pthread_mutex_destroy(mutex)
        mutex.deallocate()
    }

    /// The class called `name`, made on first use (nil once
    /// `maximumClasses` exist: such locks are simply not tracked).
    public func lockClass(named name: String) -> LockClass? {
        locked {
            if let known = classes[name] { return known }
            guard classes.count < Self.maximumClasses else {
                untracked += 1
                return nil
            }
            let made = LockClass(name: name, isPseudo: false, validator: self)
            classes[name] = made
            byID[made.id] = made
            return made
        }
    }

    /// A pseudo-lock for a wait that can deadlock like a lock (a notifier
    /// grace period: Linux's `__mmu_notifier_invalidate_range_start_map`).
    public func pseudoLock(named name: String) -> LockClass {
        locked {
            if let known = classes[name] { return known }
            let made = LockClass(name: name, isPseudo: true, validator: self)
            classes[name] = made
            byID[made.id] = made
            return made
        }
    }

    /// Classes that could not be tracked (past `maximumClasses`).
    public var untrackedClasses: Int { locked { untracked } }

    // MARK: - Acquisition and release (the primitives call these)

    /// The calling thread is about to take (or, with `trylock`, has just
    /// taken) a lock of `hook`'s class. Called before a blocking acquisition
    /// waits, so an inversion is reported before it can deadlock.
    func acquire(_ hook: LockOrderHook, instance: UnsafeRawPointer, site: SourceSite, trylock: Bool) {
        let me = Unmanaged.passUnretained(self).toOpaque()
        ExecutionContext.withCurrent { context in
            context.withLockOrderThread { state in
                if !trylock {
                    for held in state.kept where held.hook.validatorKey == me && held.hook.id != hook.id {
                        let key = LockOrderThread.key(held.hook.id, hook.id)
                        if state.knows(key) { continue }
                        addEdge(from: held, to: hook, site: site, context: context)
                        state.remember(key)
                    }
                }
                state.push(HeldLock(hook: hook, instance: instance, site: site, callee: context.callee))
            }
        }
    }

    /// The calling thread released the lock `instance` (the most recent
    /// acquisition of it). A release of a lock the thread is not recorded
    /// holding is ignored.
    func release(instance: UnsafeRawPointer) {
        ExecutionContext.withCurrent { context in
            context.withLockOrderThread { state in _ = state.remove(instance) }
        }
    }

    /// An allocation that may reclaim (Linux: `might_alloc` ->
    /// `fs_reclaim_acquire` / `fs_reclaim_release`): the `reclaim`
    /// pseudo-lock taken and dropped at once, so every lock held here
    /// comes before reclaim. Nothing in reclaim context (PF_MEMALLOC: such
    /// an allocation never reclaims).
    public func mightReclaim(site: SourceSite) {
        guard !ExecutionContext.isCurrentInReclaim else { return }
        let token = UnsafeRawPointer(bitPattern: 0x7ec1_a1a0)!
        acquire(reclaimHook, instance: token, site: site, trylock: false)
        release(instance: token)
    }

    /// Whether the calling thread is recorded holding `instance`.
    func isHeldByCurrentThread(instance: AnyObject) -> Bool {
        let pointer = UnsafeRawPointer(Unmanaged.passUnretained(instance).toOpaque())
        return ExecutionContext.withCurrent { context in context.withLockOrderThread { $0.kept.contains { $0.instance == pointer } } }
    }

    /// How many locks of this validator the calling thread holds.
    public var heldByCurrentThread: Int {
        ExecutionContext.withCurrent { context in
            context.withLockOrderThread { state in
                var mine = 0
                let me = Unmanaged.passUnretained(self).toOpaque()
                for held in state.kept where held.hook.validatorKey == me { mine += 1 }
                return mine
            }
        }
    }

    /// The locks of this validator the calling thread holds, oldest first,
    /// described (class, site, callee).
    public func describeHeldByCurrentThread() -> [String] {
        ExecutionContext.withCurrent { context in
            let me = Unmanaged.passUnretained(self).toOpaque()
            return context.withLockOrderThread { state in state.kept.filter { $0.hook.validatorKey == me }.map(Self.describe) }
        }
    }

    // MARK: - The graph

    private func locked<R>(_ body: () -> R) -> R {
        pthread_mutex_lock(mutex)
        defer { pthread_mutex_unlock(mutex) }
        return body()
    }

    private static func describe(_ held: HeldLock) -> String {
        "'\(held.name)'" + place(held.site, held.callee)
    }

    /// ` taken at File.swift:12 in gpu#0 access`; a site of line 0 (a
    /// plugin's code, which has no Swift site) is left out.
    private static func place(_ site: SourceSite, _ callee: CalleeFrame?) -> String {
        (site.line == 0 ? " taken" : " taken at \(site)") + (callee.map { " in \($0.described)" } ?? "")
    }

    private func addEdge(from held: HeldLock, to hook: LockOrderHook, site: SourceSite, context: ExecutionContext) {
        let target = hook.lockClass.takeUnretainedValue()
        let fromText = Self.describe(held)
        let toText = "'\(target.name)'" + Self.place(site, context.callee)
        let thread = context.thread.description
        let violation: LockOrderViolation? = locked {
            let source = held.hook.id
            if edges[source]?[target.id] != nil { return nil }
            // A path target ->* source closes a cycle with source -> target.
            let path = self.path(from: target.id, to: source)
            edges[source, default: [:]][target.id] = Edge(from: fromText, to: toText, thread: thread)
            guard let path else { return nil }
            let cycle = [source] + path.dropLast()  // source, target, ..., source's predecessor
            let key = cycle.sorted()
            guard !reported.contains(key) else { return nil }
            reported.insert(key)
            return makeViolation(cycle: cycle, newEdge: Edge(from: fromText, to: toText, thread: thread))
        }
        if let violation { violations.record(violation) }
    }

    /// The classes on a shortest path `from` ->* `to` (both included), or nil.
    private func path(from start: UInt32, to goal: UInt32) -> [UInt32]? {
        if start == goal { return [start] }
        var previous: [UInt32: UInt32] = [start: start]
        var frontier = [start]
        while !frontier.isEmpty {
            var next: [UInt32] = []
            for node in frontier {
                for successor in (edges[node] ?? [:]).keys.sorted() where previous[successor] == nil {
                    previous[successor] = node
                    if successor == goal {
                        var path = [goal]
                        var cursor = goal
                        while cursor != start {
                            cursor = previous[cursor]!
                            path.append(cursor)
                        }
                        return path.reversed()
                    }
                    next.append(successor)
                }
            }
            frontier = next
        }
        return nil
    }

    /// The report of a cycle (mutex held): `cycle` is the new edge's source,
    /// then the path back to it through the edges seen before.
    private func makeViolation(cycle: [UInt32], newEdge: Edge) -> LockOrderViolation {
        let names = cycle.map { byID[$0]?.name ?? "?" }
        var earlier: [String] = []
        for index in 1..<cycle.count {
            let from = cycle[index]
            let to = cycle[(index + 1) % cycle.count]
            if let edge = edges[from]?[to] { earlier.append("\(edge.thread) held \(edge.from), then took \(edge.to)") }
        }
        return LockOrderViolation(
            classes: names, involvesReclaim: cycle.contains { byID[$0]?.name == "reclaim" && byID[$0]?.isPseudo == true },
            thisThread: ["\(newEdge.thread) holds \(newEdge.from), and takes \(newEdge.to)"], earlier: earlier)
    }
}

extension ExecutionContext {
    /// Runs `body` on the calling thread's lock-order state (made on first
    /// use), with no reference counting.
    @inline(__always)
    func withLockOrderThread<R>(_ body: (LockOrderThread) -> R) -> R {
        if lockOrderState == nil { lockOrderState = .passRetained(LockOrderThread()) }
        return lockOrderState!._withUnsafeGuaranteedRef(body)
    }
}
