public import MMUNotifier
import LabSync
import Synchronization

/// A stress run of the notifier core alone (`mmulab notifier-storm`): actors
/// on the core's threads against in-process mirror devices (KVM-like,
/// GPU-like, RDMA-like; see StormDevices.swift), with the stale-translation
/// oracle after every invalidation. It knows nothing of the primary MMU
/// model or of plugins: what it checks is the notifier contract itself.
public final class NotifierStorm: Sendable {
    static let pagesPerSpace = 256
    static let rangePages = 32
    static let blockableEvents: [NotifierEvent] = [
        .munmap, .mremap, .madviseDontNeed, .mprotect, .writeProtect, .softDirty, .vmscan, .migrate, .ksm, .cowBreak, .exclusive,
    ]

    struct Space: Sendable {
        let notifiers: AddressSpaceNotifiers
        let primary: StormPrimary
        let mirror: MirrorSubscriber
        let busy: BusyDevice
        let ranges: [FaultingRange]
        let intervals: [IntervalNotifier]
        let guests: Guests
    }

    /// Subscribers the registrar adds and removes. The oracle checks a guest
    /// from before its registration starts; devices may fault through it only
    /// once `register` has returned (the subscriber's side of the contract).
    final class Guests: @unchecked Sendable {
        // @unchecked: `list` and `ready` are only touched with `lock` held.
        private let lock: SpinLock
        private var list: [MirrorSubscriber] = []
        private var ready: [MirrorSubscriber] = []
        init(sync: SyncDomain) { lock = SpinLock("guests", domain: sync) }
        func add(_ s: MirrorSubscriber) { lock.withLock { list.append(s) } }
        func markRegistered(_ s: MirrorSubscriber) { lock.withLock { ready.append(s) } }
        func removeOldest() -> MirrorSubscriber? {
            lock.withLock {
                guard !list.isEmpty else { return nil }
                let oldest = list.removeFirst()
                ready.removeAll { $0 === oldest }
                return oldest
            }
        }
        /// Every guest the oracle checks.
        var all: [MirrorSubscriber] { lock.withLock { list } }
        /// The guests whose registration has completed.
        var registered: [MirrorSubscriber] { lock.withLock { ready } }
    }

    public let seed: UInt64
    let core: NotifierCore
    let spaces: [Space]
    let counters = Counters()

    final class Counters: Sendable {
        let invalidations = Atomic<Int>(0)
        let refused = Atomic<Int>(0)
        let faults = Atomic<Int>(0)
        let faultRetries = Atomic<Int>(0)
        let registrations = Atomic<Int>(0)
        let stale = Atomic<Int>(0)
    }

    private let staleReports: ReportLog<String>

    /// Builds `addressSpaces` address spaces (at least 1), each with its devices registered.
    /// `faults` breaks the core on purpose, to see the oracle catch it.
    public init(seed: UInt64, addressSpaces: Int, faults: NotifierCore.FaultInjection) {
        precondition(addressSpaces > 0, "a storm needs an address space")
        self.seed = seed
        let core = NotifierCore(faults: faults)
        self.core = core
        staleReports = ReportLog(capacity: 20)
        let sync = core.sync
        spaces = (0..<addressSpaces).map { index in
            let id = AddressSpaceID(UInt64(index + 1))
            let notifiers = core.makeAddressSpaceNotifiers(for: id)
            let mirror = MirrorSubscriber("kvm-like \(id)", sync: sync)
            let busy = BusyDevice("rdma-like \(id)", sync: sync)
            try! notifiers.register(mirror)
            try! notifiers.register(busy)
            let ranges = (0..<(Self.pagesPerSpace / Self.rangePages)).map { FaultingRange("gpu-like \(id) range \($0)", sync: sync) }
            let intervals = ranges.enumerated().map { i, range in
                try! notifiers.insertInterval(
                    start: UInt64(i * Self.rangePages) * stormPageSize,
                    end: UInt64((i + 1) * Self.rangePages) * stormPageSize, ops: range)
            }
            return Space(
                notifiers: notifiers, primary: StormPrimary(pages: Self.pagesPerSpace), mirror: mirror, busy: busy,
                ranges: ranges, intervals: intervals, guests: Guests(sync: sync))
        }
    }

    /// Where a running storm stands (for a progress line).
    public struct Snapshot: Sendable {
        public let elapsed: Duration
        public let invalidations: Int
        public let faults: Int
        public let violations: Int
    }

    /// Runs every actor for `duration`, calling `progress` about four times a
    /// second, then unregisters every guest and releases every space. Run once.
    public func run(for duration: Duration, progress: (Snapshot) -> Void) -> Outcome {
        let sync = core.sync
        let stop = Atomic<Bool>(false)
        let start = sync.now()
        var threads: [any ThreadHandle] = []
        threads.append(sync.spawnThread(named: "invalidator") { self.invalidator(stop, stream: 0) })
        threads.append(sync.spawnThread(named: "oom-reaper") { self.reaper(stop, stream: 1) })
        threads.append(sync.spawnThread(named: "device-faults") { self.faulter(stop, stream: 2) })
        threads.append(sync.spawnThread(named: "dma") { self.dma(stop, stream: 3) })
        threads.append(sync.spawnThread(named: "registrar") { self.registrar(stop, stream: 4) })

        while sync.now() - start < duration {
            sync.sleep(for: .milliseconds(250))
            progress(snapshot(since: start))
        }
        stop.store(true, ordering: .sequentiallyConsistent)
        threads.forEach { $0.join() }
        let elapsed = sync.now() - start
        for space in spaces {
            while let guest = space.guests.removeOldest() { try? space.notifiers.unregister(guest) }
            space.notifiers.release()
        }
        return Outcome(self, elapsed: elapsed)
    }

    private func snapshot(since start: Duration) -> Snapshot {
        Snapshot(
            elapsed: core.sync.now() - start,
            invalidations: counters.invalidations.load(ordering: .relaxed),
            faults: counters.faults.load(ordering: .relaxed),
            violations: violationCount)
    }

    var violationCount: Int {
        counters.stale.load(ordering: .relaxed) + core.contractViolations.count + core.sync.contextViolations.count
    }

    var staleDescriptions: [String] { staleReports.snapshot }

    // MARK: Actors

    private func randomRange(_ rng: inout SplitMix64) -> Range<Int> {
        let first = Int.random(in: 0..<Self.pagesPerSpace, using: &rng)
        return first..<min(first + Int.random(in: 1...48, using: &rng), Self.pagesPerSpace)
    }

    private func invalidator(_ stop: borrowing Atomic<Bool>, stream: Int) {
        var rng = SplitMix64.stream(stream, of: seed)
        while !stop.load(ordering: .relaxed) {
            let space = spaces.randomElement(using: &rng)!
            let pages = randomRange(&rng)
            let event = Self.blockableEvents.randomElement(using: &rng)!
            let owner: OwnerCookie? = event == .migrate ? OwnerCookie(UInt64(stream)) : nil
            let range = InvalidationRange(
                addressSpace: space.notifiers.addressSpace, start: UInt64(pages.lowerBound) * stormPageSize,
                end: UInt64(pages.upperBound) * stormPageSize, event: event, owner: owner)
            let active = space.notifiers.startInvalidation(range)
            space.notifiers.invalidateSecondaryTLBs(range)
            if Int.random(in: 0..<4, using: &rng) == 0 { core.sync.sleep(for: .microseconds(20)) }
            var minimum: MinimumVersions = [:]
            for page in pages { minimum[page] = space.primary.bump(page) }
            active.end()
            counters.invalidations.add(1, ordering: .relaxed)
            check(space, minimum, after: range)
        }
    }

    private func reaper(_ stop: borrowing Atomic<Bool>, stream: Int) {
        var rng = SplitMix64.stream(stream, of: seed)
        while !stop.load(ordering: .relaxed) {
            let space = spaces.randomElement(using: &rng)!
            let pages = randomRange(&rng)
            let range = InvalidationRange(
                addressSpace: space.notifiers.addressSpace, start: UInt64(pages.lowerBound) * stormPageSize,
                end: UInt64(pages.upperBound) * stormPageSize, event: .oomReap, blockable: false)
            do {
                let active = try space.notifiers.tryStartInvalidation(range)
                var minimum: MinimumVersions = [:]
                for page in pages { minimum[page] = space.primary.bump(page) }
                active.end()
                counters.invalidations.add(1, ordering: .relaxed)
                check(space, minimum, after: range)
                core.sync.sleep(for: .microseconds(20))
            } catch {
                counters.refused.add(1, ordering: .relaxed)
                core.sync.sleep(for: .microseconds(50))  // back off, retry later
            }
        }
    }

    private func faulter(_ stop: borrowing Atomic<Bool>, stream: Int) {
        var rng = SplitMix64.stream(stream, of: seed)
        while !stop.load(ordering: .relaxed) {
            let space = spaces.randomElement(using: &rng)!
            let page = Int.random(in: 0..<Self.pagesPerSpace, using: &rng)
            let index = page / Self.rangePages
            let retries = space.ranges[index].fault(page, interval: space.intervals[index], primary: space.primary)
            _ = space.mirror.fault(page, primary: space.primary)
            for guest in space.guests.registered { _ = guest.fault(page, primary: space.primary) }
            counters.faults.add(1, ordering: .relaxed)
            counters.faultRetries.add(retries, ordering: .relaxed)
        }
    }

    private func dma(_ stop: borrowing Atomic<Bool>, stream: Int) {
        var rng = SplitMix64.stream(stream, of: seed)
        while !stop.load(ordering: .relaxed) {
            let space = spaces.randomElement(using: &rng)!
            space.busy.dma.withLock { core.sync.sleep(for: .microseconds(100)) }
            core.sync.sleep(for: .microseconds(100))
        }
    }

    private func registrar(_ stop: borrowing Atomic<Bool>, stream: Int) {
        var rng = SplitMix64.stream(stream, of: seed)
        var serial = 0
        while !stop.load(ordering: .relaxed) {
            let space = spaces.randomElement(using: &rng)!
            serial += 1
            let guest = MirrorSubscriber("guest-\(serial) \(space.notifiers.addressSpace)", sync: core.sync)
            space.guests.add(guest)
            try! space.notifiers.register(guest)
            space.guests.markRegistered(guest)
            counters.registrations.add(1, ordering: .relaxed)
            for _ in 0..<8 { _ = guest.fault(Int.random(in: 0..<Self.pagesPerSpace, using: &rng), primary: space.primary) }
            if space.guests.all.count > 3, let old = space.guests.removeOldest() { try? space.notifiers.unregister(old) }
            core.sync.sleep(for: .milliseconds(1))
        }
    }

    /// The oracle: after an invalidation ended, no device may hold a
    /// translation older than the version the primary moved to.
    private func check(_ space: Space, _ minimum: MinimumVersions, after range: InvalidationRange) {
        var devices: [any CheckedDevice] = [space.mirror] + space.guests.all
        devices += space.ranges
        for device in devices {
            let stale = device.stalePages(minimum)
            guard !stale.isEmpty else { continue }
            counters.stale.add(1, ordering: .relaxed)
            staleReports.record(
                "stale translation: \(device.name) still maps pages \(stale.sorted().prefix(8)) after \(range) ended")
        }
    }
}
