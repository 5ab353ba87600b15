public import LabSync
import Synchronization

/// What a shrinker is asked to do (Linux: `struct shrink_control`).
public struct ShrinkControl: Sendable, Hashable {
    /// How many objects to try to free in this call.
    public var objectsToScan: Int
    /// Whether the shrinker may sleep. When false the call runs in a
    /// non-blockable section and a shrinker that would have to wait (its
    /// device lock is contended) answers `.stop` ("fails quickly on shrinker
    /// path": Jérôme Glisse, linux-kernel, 2013-09-30, "Re: [PATCH] anon_vmas:
    /// Convert the rwsem to an rwlock_t").
    public var canBlock: Bool

    public init(objectsToScan: Int, canBlock: Bool) {
        self.objectsToScan = objectsToScan
        self.canBlock = canBlock
    }
}

/// A shrinker's answer to `scan`.
public enum ShrinkScanResult: Sendable, Hashable {
    /// This many objects were freed.
    case freed(Int)
    /// No progress is possible now (Linux: `SHRINK_STOP`); do not call again
    /// in this round.
    case stop
}

/// A cache that gives memory back under pressure (Linux: `struct shrinker`):
/// a device's page-table pages, its idle ranges.
public protocol Shrinker: SectionSubject, Sendable {
    var shrinkerName: String { get }
    /// How many objects could be freed now (Linux: `count_objects`). Never sleeps.
    func count(_ control: ShrinkControl) -> Int
    /// Free up to `control.objectsToScan` objects (Linux: `scan_objects`).
    func scan(_ control: ShrinkControl) -> ShrinkScanResult
}

extension Shrinker {
    public var shrinkerName: String { String(describing: type(of: self)) }
    public var sectionSubjectName: String { shrinkerName }
}

/// The shrinkers of one lab, called by reclaim in proportion to its own
/// pressure (Linux: `shrink_slab` / `do_shrink_slab`).
public final class ShrinkerRegistry: @unchecked Sendable {
    // @unchecked: `shrinkers` and `inFlight` are guarded by `lock`.
    /// Objects handed to one `scan` call at most (Linux: `SHRINK_BATCH`).
    public static let batchSize = 128

    private let sync: SyncDomain
    private let lock: SpinLock
    private let drained: WaitQueue
    private var shrinkers: [any Shrinker] = []
    private var inFlight: [ObjectIdentifier: Int] = [:]

    public init(sync: SyncDomain) {
        self.sync = sync
        self.lock = SpinLock("shrinker registry", domain: sync)
        self.drained = WaitQueue("shrinker registry", domain: sync)
    }

    public func register(_ shrinker: any Shrinker) {
        lock.withLock { shrinkers.append(shrinker) }
    }

    /// Removes a shrinker and waits until no call to it is running. May sleep.
    public func unregister(_ shrinker: any Shrinker, file: StaticString = #fileID, line: UInt = #line) {
        let site = SourceSite(file: file, line: line)
        let id = ObjectIdentifier(shrinker)
        lock.withLock { shrinkers.removeAll { $0 === shrinker } }
        drained.wait(file: site.file, line: site.line) { lock.withLock { inFlight[id, default: 0] == 0 } }
    }

    public var registered: [any Shrinker] { lock.withLock { shrinkers } }

    /// The outcome of one `shrink` round.
    public struct Report: Sendable, Hashable {
        /// Objects freed, over all shrinkers.
        public var freed = 0
        /// Objects asked for, over all shrinkers.
        public var scanned = 0
        /// Shrinkers that answered `.stop`.
        public var stopped: [String] = []
    }

    /// Asks every shrinker to free the fraction `scanned / eligible` of what
    /// it holds, the same fraction reclaim just scanned of its own LRU
    /// (Linux: `delta = freeable * nr_scanned / nr_eligible`), in batches of
    /// `batchSize`. With `canBlock == false` every call runs in a
    /// non-blockable section.
    public func shrink(scanned: Int, eligible: Int, canBlock: Bool, file: StaticString = #fileID, line: UInt = #line) -> Report {
        let site = SourceSite(file: file, line: line)
        precondition(scanned >= 0 && eligible > 0, "shrink needs a positive eligible count")
        let current = lock.withLock { shrinkers }
        var report = Report()
        for shrinker in current {
            let id = ObjectIdentifier(shrinker)
            lock.withLock { inFlight[id, default: 0] += 1 }
            defer {
                let idle = lock.withLock { () -> Bool in
                    inFlight[id, default: 1] -= 1
                    return inFlight[id] == 0
                }
                if idle { drained.wakeAll() }
            }
            let run = { () -> Void in
                let freeable = shrinker.count(ShrinkControl(objectsToScan: 0, canBlock: canBlock))
                guard freeable > 0 else { return }
                // Round up so a small cache under pressure still gets asked.
                var toScan = Int((Int64(freeable) * Int64(scanned) + Int64(eligible) - 1) / Int64(eligible))
                toScan = min(toScan, freeable)
                while toScan > 0 {
                    let batch = min(toScan, Self.batchSize)
                    report.scanned += batch
                    switch shrinker.scan(ShrinkControl(objectsToScan: batch, canBlock: canBlock)) {
                    case .freed(let count):
                        report.freed += count
                        toScan -= batch
                    case .stop:
                        report.stopped.append(shrinker.shrinkerName)
                        return
                    }
                }
            }
            if canBlock {
                run()
            } else {
                ExecutionContext.current.withNonBlockableSection(
                    reason: "non-blockable shrink", subject: shrinker, file: site.file, line: site.line, run)
            }
        }
        return report
    }
}
