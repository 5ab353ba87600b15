import TestSupport
import LabSync
import MMUNotifier
@testable import NotifierStormLab
import Synchronization
import Testing

// The devices are NotifierStormLab's (`MirrorSubscriber`: KVM-like, one
// whole-space subscription; `FaultingRange`: GPU-like, the interval fault
// loop), so these tests and `mmulab notifier-storm` check the same code.

/// Forwards to a storm range and counts the callbacks it gets after its
/// interval was removed (there must be none).
final class RemovalWatch: IntervalInvalidator, @unchecked Sendable {
    let device: FaultingRange
    var intervalName: String { device.intervalName }
    let removed = Atomic<Bool>(false)
    let callbacksAfterRemoval = Atomic<Int>(0)

    init(_ device: FaultingRange) { self.device = device }

    func invalidate(_ interval: IntervalNotifier, range: InvalidationRange, currentSeq: UInt64) -> Bool {
        if removed.load(ordering: .sequentiallyConsistent) { callbacksAfterRemoval.add(1, ordering: .sequentiallyConsistent) }
        return device.invalidate(interval, range: range, currentSeq: currentSeq)
    }
}

/// The primary side of a storm: start, let the window stay open a little,
/// change the PTEs (bump versions), end; then return what every device must
/// now hold at least.
func invalidate(
    _ notifiers: AddressSpaceNotifiers, pages: Range<Int>, event: NotifierEvent, primary: StormPrimary,
    sync: SyncDomain, hold: Duration
) -> [Int: UInt64] {
    let active = notifiers.startInvalidation(range(notifiers.addressSpace, pages: pages, event))
    if hold > .zero { sync.sleep(for: hold) }
    var bumped: [Int: UInt64] = [:]
    for page in pages { bumped[page] = primary.bump(page) }
    active.end()
    return bumped
}

@Suite("Storms: subscriptions and faults racing invalidations")
struct StormTests {
    static let pages = 64
    static let events: [NotifierEvent] = [.munmap, .vmscan, .migrate, .mprotect, .ksm, .madviseDontNeed]

    /// Runs the registration storm; returns (registrations, stale translations found).
    func registrationStorm(faults: NotifierCore.FaultInjection, registrations: Int, seed: UInt64) -> (Int, [String]) {
        let core = NotifierCore(faults: faults)
        let sync = core.sync
        let mm = AddressSpaceID(1)
        let notifiers = core.makeAddressSpaceNotifiers(for: mm)
        let primary = StormPrimary(pages: Self.pages)
        let live = Mutex<[MirrorSubscriber]>([])
        let stale = Mutex<[String]>([])
        let stop = Atomic<Bool>(false)

        let invalidators = (0..<2).map { index in
            sync.spawnThread(named: "invalidator-\(index)") {
                var rng = SplitMix64.stream(index, of: seed)
                while !stop.load(ordering: .relaxed) {
                    let first = Int.random(in: 0..<Self.pages, using: &rng)
                    let count = Int.random(in: 1...8, using: &rng)
                    let pages = first..<min(first + count, Self.pages)
                    let event = Self.events.randomElement(using: &rng)!
                    let bumped = invalidate(notifiers, pages: pages, event: event, primary: primary, sync: sync, hold: .microseconds(200))
                    for device in live.withLock({ $0 }) {
                        let pagesStale = device.stalePages(bumped)
                        if !pagesStale.isEmpty {
                            stale.withLock { $0.append("\(device.name) kept pages \(pagesStale.sorted()) after \(event) ended") }
                        }
                    }
                }
            }
        }
        let registrar = sync.spawnThread(named: "registrar") {
            var rng = SplitMix64.stream(99, of: seed)
            for i in 0..<registrations {
                let device = MirrorSubscriber("device-\(i)", sync: sync)
                live.withLock { $0.append(device) }
                try! notifiers.register(device)
                for _ in 0..<16 { _ = device.fault(Int.random(in: 0..<Self.pages, using: &rng), primary: primary) }
                if live.withLock({ $0.count }) > 4 {
                    let old = live.withLock { $0.removeFirst() }
                    try! notifiers.unregister(old)
                }
            }
            stop.store(true, ordering: .relaxed)
        }
        registrar.join()
        invalidators.forEach { $0.join() }
        for device in live.withLock({ $0 }) { try! notifiers.unregister(device) }
        #expect(notifiers.registeredSubscribers.isEmpty)
        #expect(!notifiers.isInvalidating)
        #expect(core.contractViolations.count == 0)
        #expect(sync.contextViolations.count == 0)
        return (registrations, stale.withLock { $0 })
    }

    @Test func registrationDuringAnInvalidationStormMissesNone() {
        let (count, stale) = registrationStorm(faults: [], registrations: 150 * stressScale, seed: testSeed)
        #expect(stale.isEmpty, "seed \(testSeed): \(count) registrations left stale translations: \(stale.prefix(5))")
    }

    /// The same storm with the grace period switched off must be caught:
    /// proof the storm test can fail when the seed-000 rule is broken.
    @Test func theStormCatchesRegistrationWithoutAGracePeriod() {
        var total: [String] = []
        for attempt in 0..<5 where total.isEmpty {
            total += registrationStorm(faults: .skipRegistrationGracePeriod, registrations: 150, seed: testSeed &+ UInt64(attempt)).1
        }
        #expect(!total.isEmpty, "seed \(testSeed): a registration that skips the grace period went unnoticed")
    }

    @Test func faultsRacingInvalidationsNeverInstallStaleTranslations() throws {
        let core = NotifierCore()
        let sync = core.sync
        let notifiers = core.makeAddressSpaceNotifiers(for: AddressSpaceID(3))
        let primary = StormPrimary(pages: Self.pages)
        let seed = testSeed
        let chunk = 16
        let devices = (0..<(Self.pages / chunk)).map { FaultingRange("gpu-range-\($0)", sync: sync) }
        let intervals = try devices.enumerated().map { index, device in
            try notifiers.insertInterval(start: UInt64(index * chunk) * pageSize, end: UInt64((index + 1) * chunk) * pageSize, ops: device)
        }
        let stop = Atomic<Bool>(false)
        let stale = Mutex<[String]>([])
        let retries = Atomic<Int>(0)
        let churnAfterRemoval = Atomic<Int>(0)

        let faulters = (0..<2).map { index in
            sync.spawnThread(named: "device-\(index)") {
                var rng = SplitMix64.stream(10 + index, of: seed)
                while !stop.load(ordering: .relaxed) {
                    let page = Int.random(in: 0..<Self.pages, using: &rng)
                    let owner = page / chunk
                    let extra = devices[owner].fault(page, interval: intervals[owner], primary: primary)
                    retries.add(extra, ordering: .relaxed)
                }
            }
        }
        // Interval churn: insert and remove short-lived intervals through the storm.
        let churner = sync.spawnThread(named: "churn") {
            var rng = SplitMix64.stream(20, of: seed)
            while !stop.load(ordering: .relaxed) {
                let watch = RemovalWatch(FaultingRange("short-lived", sync: sync))
                let first = Int.random(in: 0..<Self.pages, using: &rng)
                let interval = try! notifiers.insertInterval(
                    start: UInt64(first) * pageSize, end: UInt64(first + 1) * pageSize, ops: watch)
                _ = watch.device.fault(first, interval: interval, primary: primary)
                try! notifiers.removeInterval(interval)
                watch.removed.store(true, ordering: .sequentiallyConsistent)
                sync.sleep(for: .microseconds(50))
                churnAfterRemoval.add(watch.callbacksAfterRemoval.load(ordering: .sequentiallyConsistent), ordering: .relaxed)
            }
        }
        let iterations = 1_500 * stressScale
        let invalidator = sync.spawnThread(named: "invalidator") {
            var rng = SplitMix64.stream(0, of: seed)
            for _ in 0..<iterations {
                let first = Int.random(in: 0..<Self.pages, using: &rng)
                let pages = first..<min(first + Int.random(in: 1...24, using: &rng), Self.pages)
                let event = Self.events.randomElement(using: &rng)!
                let hold: Duration = Bool.random(using: &rng) ? .microseconds(20) : .zero
                let bumped = invalidate(notifiers, pages: pages, event: event, primary: primary, sync: sync, hold: hold)
                for device in devices {
                    let pagesStale = device.stalePages(bumped)
                    if !pagesStale.isEmpty { stale.withLock { $0.append("\(device.name) kept \(pagesStale.sorted())") } }
                }
            }
            stop.store(true, ordering: .relaxed)
        }
        invalidator.join()
        faulters.forEach { $0.join() }
        churner.join()

        let found = stale.withLock { $0 }
        #expect(found.isEmpty, "seed \(seed): stale translations: \(found.prefix(5))")
        #expect(retries.load(ordering: .relaxed) > 0, "seed \(seed): the storm never made a fault retry, so it tested nothing")
        #expect(churnAfterRemoval.load(ordering: .relaxed) == 0, "seed \(seed): a removed interval got a callback")
        #expect(notifiers.intervalCount == devices.count)
        #expect(core.contractViolations.count == 0)
        #expect(sync.contextViolations.count == 0)
    }

    @Test func nonBlockableStartsRaceBlockableOnesWithoutLeakingActiveState() throws {
        // A device that refuses non-blockable starts whenever its lock is busy,
        // like mlx5 ODP and amdgpu: the refusals must leave nothing active.
        final class TryLockDevice: AddressSpaceSubscriber, @unchecked Sendable {
            let lock: SleepingLock
            let balance = Atomic<Int>(0)
            init(sync: SyncDomain) { lock = SleepingLock("device", domain: sync) }
            func invalidateRangeStart(_ range: InvalidationRange) -> StartResult {
                if range.blockable {
                    lock.withLock {}
                } else {
                    guard lock.tryLock() else { return .retry }
                    lock.unlock()
                }
                balance.add(1, ordering: .sequentiallyConsistent)
                return .ok
            }
            func invalidateRangeEnd(_ range: InvalidationRange) { balance.subtract(1, ordering: .sequentiallyConsistent) }
        }
        let core = NotifierCore()
        let sync = core.sync
        let mm = AddressSpaceID(4)
        let notifiers = core.makeAddressSpaceNotifiers(for: mm)
        let device = TryLockDevice(sync: sync)
        let witness = RecordingSubscriber("witness", domain: sync)
        try notifiers.register(witness)
        try notifiers.register(device)
        let refused = Atomic<Int>(0)
        let rounds = 3_000 * stressScale
        let holder = sync.spawnThread(named: "device-work") {
            for _ in 0..<rounds / 10 { device.lock.withLock { sync.sleep(for: .microseconds(20)) } }
        }
        let reaper = sync.spawnThread(named: "oom-reaper") {
            for i in 0..<rounds {
                let r = range(mm, pages: (i % 32)..<(i % 32 + 1), .oomReap, blockable: false)
                do { try notifiers.tryStartInvalidation(r).end() } catch { refused.add(1, ordering: .relaxed) }
            }
        }
        for i in 0..<rounds / 3 { notifiers.startInvalidation(range(mm, pages: i % 8..<(i % 8 + 2), .vmscan)).end() }
        reaper.join()
        holder.join()
        #expect(device.balance.load(ordering: .sequentiallyConsistent) == 0, "every successful start had one end")
        #expect(!notifiers.isInvalidating)
        let starts = witness.calls.filter { if case .start = $0 { true } else { false } }.count
        let ends = witness.calls.filter { if case .end = $0 { true } else { false } }.count
        #expect(starts == ends, "the witness was backed out of every refused start")
        #expect(notifiers.statistics.refusedStarts == refused.load(ordering: .relaxed))
        #expect(sync.contextViolations.count == 0, "tryLock never sleeps")
    }
}
