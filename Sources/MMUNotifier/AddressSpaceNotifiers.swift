import LabSync
import Synchronization

/// The notifier state of one address space (Linux: `struct
/// mmu_notifier_subscriptions`, reached from `mm->notifier_subscriptions`).
///
/// The primary MMU holds one of these per address space and calls it
/// directly, so a dispatch never looks at another address space's
/// subscribers ("A global list is not ok ... O(N) ... it's so trivial to
/// go O(1)": Andrea Arcangeli, linux-kernel/kvm-devel, 2008-01-24, "Re:
/// [kvm-devel] [PATCH] export notifier #1").
///
/// What it guarantees:
/// - start goes to every whole-space subscriber and every overlapping
///   interval; end only to the whole-space subscribers whose start returned
///   `.ok`;
/// - a non-blockable start that any subscriber refuses fails as a whole:
///   the subscribers that had already started are ended at once (backed
///   out), and the caller gets `InvalidationRefused` and must not end it;
/// - `.retry` from a blockable start is recorded as a contract violation;
///   that subscriber gets no end, the others proceed (a blockable caller
///   cannot fail, as in Linux);
/// - every callback of a non-blockable range, and every young / change-PTE /
///   secondary-TLB callback, runs inside a non-blockable section;
/// - a subscription added while invalidations are in flight misses none of
///   them (Linux's `mm_lock`, today `mm_take_all_locks` in
///   `__mmu_notifier_register`; see `register` and `insertInterval`).
public final class AddressSpaceNotifiers: @unchecked Sendable {
    // @unchecked: every `var` below is read and written only with `lock`
    // held, except `tree` and `intervals`, which are mutated only with `lock`
    // held *and* no invalidation active, and read without the lock only by
    // dispatches that are themselves counted in `activeInvalidations`.
    // The lock already serialises them, so the runtime's dynamic
    // exclusivity checks are switched off (`@exclusivity(unchecked)`): they
    // cost more than the rest of a dispatch. Those the interval half
    // (`AddressSpaceNotifiers+Intervals.swift`) uses are internal, not
    // private, and bound by the same rule.

    public let addressSpace: AddressSpaceID
    public let core: NotifierCore
    let lock: SpinLock
    let waitQueue: WaitQueue

    @exclusivity(unchecked) private var subscribers = SubscriberList([])
    @exclusivity(unchecked) var released = false

    // Interval subscriptions (Linux's itree side).
    let tree = IntervalTree()
    /// By handle; each retained by hand from `insertInterval` to `forget`
    /// (or deinit), so a dispatch reads it with no reference counting.
    @exclusivity(unchecked) var intervals: [Unmanaged<IntervalNotifier>?] = []
    @exclusivity(unchecked) var freeHandles: [UInt32] = []
    @exclusivity(unchecked) var deferredInserts: [IntervalNotifier] = []
    @exclusivity(unchecked) var deferredRemovals: [IntervalNotifier] = []
    /// Invalidations between start and end (whole-space and interval alike).
    @exclusivity(unchecked) var activeInvalidations = 0
    /// Even while idle, odd while any invalidation is active (Linux's
    /// `invalidate_seq`). Interval sequences are always odd.
    @exclusivity(unchecked) var invalidateSeq: UInt64 = 2
    /// Threads sleeping in `waitForSequenceChange`.
    @exclusivity(unchecked) var sequenceWaiters = 0

    @exclusivity(unchecked) private var startsByEvent = [Int](repeating: 0, count: NotifierEvent.allCases.count)
    @exclusivity(unchecked) private var refusedStarts = 0

    init(addressSpace: AddressSpaceID, core: NotifierCore) {
        self.addressSpace = addressSpace
        self.core = core
        self.lock = SpinLock("notifiers \(addressSpace)", domain: core.sync, orderClass: "mmu notifier state")
        self.waitQueue = WaitQueue("notifiers \(addressSpace)", domain: core.sync)
    }

    deinit {
        for case let interval? in intervals { interval.release() }
    }

    // MARK: - Invalidation

    /// Starts a blockable invalidation (Linux:
    /// `mmu_notifier_invalidate_range_start`). Cannot fail. `recorder`, if
    /// given, hears each device's acknowledgement as its callback returns.
    public func startInvalidation(
        _ range: InvalidationRange, recorder: (any AcknowledgementRecorder)? = nil, file: StaticString = #fileID, line: UInt = #line
    ) -> ActiveInvalidation {
        let site = SourceSite(file: file, line: line)
        precondition(range.blockable, "use tryStartInvalidation for a non-blockable range")
        do {
            return try begin(range, recorder: recorder, site: site)
        } catch {
            preconditionFailure("a blockable invalidation cannot be refused: \(error)")
        }
    }

    /// Starts an invalidation that may be refused (Linux:
    /// `mmu_notifier_invalidate_range_start_nonblock`). On refusal nothing
    /// is left started and the caller must not end anything.
    public func tryStartInvalidation(
        _ range: InvalidationRange, recorder: (any AcknowledgementRecorder)? = nil, file: StaticString = #fileID, line: UInt = #line
    ) throws(InvalidationRefused) -> ActiveInvalidation {
        let site = SourceSite(file: file, line: line)
        return try begin(range, recorder: recorder, site: site)
    }

    /// The start. `intervalsOnly`: the whole-space subscribers are left
    /// out (the release's invalidation of the interval tree).
    ///
    /// No reference is counted per callback: the dispatch holds one
    /// reference to the subscriber list (taken under the lock, handed to
    /// `ActiveInvalidation` and dropped by `finish`, or here on refusal),
    /// and that list holds every subscriber it calls (`ListedSubscribers`);
    /// every interval it reaches is in the tree, which cannot change while
    /// the dispatch is counted in `activeInvalidations`, so the interval
    /// and its device side are held by `intervals` until it has ended
    /// (`forget`).
    private func begin(
        _ range: InvalidationRange, recorder: (any AcknowledgementRecorder)?, site: SourceSite, intervalsOnly: Bool = false
    ) throws(InvalidationRefused) -> ActiveInvalidation {
        precondition(range.addressSpace == addressSpace, "\(range) dispatched to \(addressSpace)")
        let (list, currentSeq, table, hasIntervals) = lock.withLock {
            () -> (Unmanaged<SubscriberList>, UInt64, [Unmanaged<IntervalNotifier>?], Bool) in
            activeInvalidations += 1
            if activeInvalidations == 1 {
                assert(invalidateSeq & 1 == 0, "the sequence is odd (\(invalidateSeq)) with no invalidation active")
                invalidateSeq += 1  // odd: invalidating
            }
            assert(invalidateSeq & 1 == 1, "the sequence is even (\(invalidateSeq)) while an invalidation is active")
            startsByEvent[Int(range.event.rawValue)] += 1
            let list = intervalsOnly ? SubscriberList([]) : subscribers
            list.readers.add(1, ordering: .sequentiallyConsistent)
            let hasIntervals = !tree.isEmpty
            // The table as of now (a reference to its storage): an insert
            // while we run may grow `intervals`, which then copies instead
            // of moving the storage under us. Every handle in the tree is
            // in it and stays, and the tree stays as it is until we end.
            return (.passRetained(list), invalidateSeq, hasIntervals ? intervals : [], hasIntervals)
        }
        let refusal = list._withUnsafeGuaranteedRef { list in
            dispatchStart(range, list: list, table: table, hasIntervals: hasIntervals, currentSeq: currentSeq, recorder: recorder, site: site)
        }
        switch refusal {
        case .started(let skipped):
            return ActiveInvalidation(range: range, notifiers: self, list: list, skipped: skipped, site: site)
        case .refused(let refusedBy):
            list.release()  // the dispatch's reference: nothing is left started
            throw InvalidationRefused(range: range, refusedBy: refusedBy)
        }
    }

    /// What a start came to.
    private enum StartOutcome {
        /// Every callback made; `skipped` answered retry to a blockable start.
        case started(skipped: PositionSet)
        /// A non-blockable start refused by `refusedBy`, backed out and its
        /// bookkeeping finished.
        case refused(refusedBy: String)
    }

    /// The start's callbacks, in the start's sections (non-blockable, and
    /// the range-start map for lock order): the recorder first hears every
    /// callback to a device the start will make, then the intervals are
    /// invalidated in tree order and the whole-space subscribers in list
    /// order. `list` and `table` as `begin` says.
    @inline(__always)
    private func dispatchStart(
        _ range: InvalidationRange, list: SubscriberList, table: [Unmanaged<IntervalNotifier>?], hasIntervals: Bool, currentSeq: UInt64,
        recorder: (any AcknowledgementRecorder)?, site: SourceSite
    ) -> StartOutcome {
        if !range.blockable {
            ExecutionContext.enterCurrentNonBlockable(
                NonBlockableSection(reason: "non-blockable invalidation", subject: range.event.name, site: site))
        }
        defer { if !range.blockable { ExecutionContext.exitCurrentNonBlockable() } }
        // A blockable start's callbacks may wait; for lock-order validation
        // they run "under" the range-start map, as in Linux, so a lock they
        // take is ordered after anything held around a wait for them.
        // Unretained: the core holds it (a `let`) and we hold the core.
        let map = range.blockable ? core.rangeStartMap.map(Unmanaged.passUnretained) : nil
        if let map { map._withUnsafeGuaranteedRef { $0.acquire(site: site) } }
        defer { if let map { map._withUnsafeGuaranteedRef { $0.release() } } }

        // Positions count the callbacks in the order the start makes them
        // (intervals in tree order, then the whole-space list); `expected`
        // holds those to a device, which the recorder numbers in that order
        // (a position's number is its rank in `expected`).
        var expected = PositionSet()
        defer { expected.dispose() }
        if let recorder {
            var callbacks: [DeviceCallback] = []
            var position = 0
            if hasIntervals {
                tree.forEachOverlap(start: range.start, end: range.end) { handle in
                    defer { position += 1 }
                    guard let interval = table[Int(handle)] else { return }
                    interval._withUnsafeGuaranteedRef { interval in
                        guard let device = interval.withOps({ $0.device }) ?? nil else { return }
                        expected.insert(position)
                        callbacks.append(DeviceCallback(device: device, start: max(range.start, interval.start), end: min(range.end, interval.end)))
                    }
                }
            }
            var keeping: [DeviceID] = []
            for index in 0..<list.listed.count {
                defer { position += 1 }
                list.listed.with(index) { subscriber in
                    guard let device = subscriber.device else { return }
                    if Self.mayKeepTranslations(subscriber, range) {
                        keeping.append(device)
                        return
                    }
                    expected.insert(position)
                    callbacks.append(DeviceCallback(device: device, start: range.start, end: range.end))
                }
            }
            if !keeping.isEmpty { recorder.keeping(keeping) }
            recorder.expect(callbacks)
        }

        // Intervals first, as Linux does. The tree cannot change under us:
        // we are counted in `activeInvalidations`, so inserts and removals
        // are deferred until we end.
        var position = 0
        if hasIntervals {
            var refusal: String? = nil
            tree.forEachOverlap(start: range.start, end: range.end) { handle in
                defer { position += 1 }
                guard refusal == nil, let interval = table[Int(handle)] else { return }
                interval._withUnsafeGuaranteedRef { interval in
                    // The name of the interval if it refused, nil if it stopped.
                    let answer = interval.withOps { ops -> String? in
                        ops.invalidate(interval, range: range, currentSeq: currentSeq) ? nil : ops.intervalName
                    }
                    guard let answer else { return }  // no device side (detached)
                    guard let refusedBy = answer else {
                        // from here the device may no longer use the overlap through this interval
                        if let recorder, expected.contains(position) { recorder.acknowledged(expected.rank(of: position)) }
                        return
                    }
                    if range.blockable {
                        core.contractViolations.record(
                            ContractViolation(kind: .retryFromBlockableStart(subscriber: refusedBy), range: range, site: site))
                    } else {
                        refusal = refusedBy
                    }
                }
            }
            if let refusal {
                finishBookkeeping(list, refused: true)
                return .refused(refusedBy: refusal)
            }
        }

        var skipped = PositionSet()
        for index in 0..<list.listed.count {
            defer { position += 1 }
            let answer = list.listed.with(index) { $0.invalidateRangeStart(range) }
            guard answer == .retry else {
                // from here the device may no longer use the range
                if let recorder, expected.contains(position) { recorder.acknowledged(expected.rank(of: position)) }
                continue
            }
            if range.blockable {
                let name = list.listed.with(index) { $0.subscriberName }
                core.contractViolations.record(
                    ContractViolation(kind: .retryFromBlockableStart(subscriber: name), range: range, site: site))
                skipped.insert(index)
                continue
            }
            // Back out: end every subscriber that started, so pairs stay
            // balanced, then report the refusal.
            for started in 0..<index where !skipped.contains(started) {
                list.listed.with(started) { $0.invalidateRangeEnd(range) }
            }
            skipped.dispose()
            finishBookkeeping(list, refused: true)
            return .refused(refusedBy: list.listed.with(index) { $0.subscriberName })
        }
        return .started(skipped: skipped)
    }

    /// Whether `subscriber` may keep its translations through this start:
    /// one that handles change_pte may skip a `ksm` start and repoint its
    /// translations in change_pte instead (Andrea Arcangeli, linux-kernel,
    /// 2014-04-02, "Re: [PATCH] mm/mmu_notifier: restore set_pte_at_notify
    /// semantics": event reasons are what make change_pte work).
    private static func mayKeepTranslations(_ subscriber: any AddressSpaceSubscriber, _ range: InvalidationRange) -> Bool {
        range.event == .ksm && subscriber.capabilities.contains(.changePTE)
    }

    /// The end half, called by `ActiveInvalidation.end()` (Linux:
    /// `mmu_notifier_invalidate_range_end`). Drops the dispatch's reference
    /// to `list`, last.
    func finish(_ range: InvalidationRange, list: Unmanaged<SubscriberList>, skipped: PositionSet) {
        list._withUnsafeGuaranteedRef { list in
            if !range.blockable {
                ExecutionContext.enterCurrentNonBlockable(
                    NonBlockableSection(reason: "non-blockable invalidation end", subject: range.event.name, site: SourceSite()))
            }
            // Unretained: the core holds it (a `let`) and we hold the core.
            let map = range.blockable ? core.rangeStartMap.map(Unmanaged.passUnretained) : nil
            if let map { map._withUnsafeGuaranteedRef { $0.acquire(site: SourceSite()) } }
            for index in 0..<list.listed.count where !skipped.contains(index) {
                list.listed.with(index) { $0.invalidateRangeEnd(range) }
            }
            if let map { map._withUnsafeGuaranteedRef { $0.release() } }
            skipped.dispose()
            if !range.blockable { ExecutionContext.exitCurrentNonBlockable() }
            finishBookkeeping(list)
        }
        list.release()
    }

    /// Drops one active invalidation; the last one out flips the sequence
    /// back to even, applies deferred interval changes and wakes sleepers.
    private func finishBookkeeping(_ list: SubscriberList, refused: Bool = false) {
        var droppedOps: [any IntervalInvalidator] = []
        let wake = lock.withLock { () -> Bool in
            if refused { refusedStarts += 1 }
            activeInvalidations -= 1
            assert(activeInvalidations >= 0, "more invalidations ended than started")
            guard activeInvalidations == 0 else { return false }
            assert(invalidateSeq & 1 == 1, "the sequence is even (\(invalidateSeq)) as the last invalidation ends")
            invalidateSeq += 1  // even: idle
            if !deferredInserts.isEmpty || !deferredRemovals.isEmpty {
                droppedOps = applyDeferredIntervalChanges()
            }
            return sequenceWaiters > 0
        }
        // The device objects of removed intervals are released here, outside
        // the spin lock, in case their deinit sleeps.
        droppedOps.removeAll()
        releaseReader(list)
        if wake { waitQueue.wakeAll() }
    }

    private func releaseReader(_ list: SubscriberList) {
        if list.readers.subtract(1, ordering: .sequentiallyConsistent).newValue == 0,
            list.retired.load(ordering: .sequentiallyConsistent)
        {
            waitQueue.wakeAll()
        }
    }

    // MARK: - Atomic callbacks

    /// Linux: `mmu_notifier_arch_invalidate_secondary_tlbs`. The primary MMU
    /// calls this right after clearing the PTEs in `range`, under its
    /// page-table lock; every callback runs in a non-blockable section.
    public func invalidateSecondaryTLBs(_ range: InvalidationRange, file: StaticString = #fileID, line: UInt = #line) {
        let site = SourceSite(file: file, line: line)
        withReader(reason: "secondary TLB invalidation", site: site) { list in
            for index in 0..<list.secondaryTLB.count { list.secondaryTLB.with(index) { $0.invalidateSecondaryTLBs(range) } }
        }
    }

    /// Clears the devices' accessed bits in `[start, end)` and reports
    /// whether any was set (Linux: `mmu_notifier_clear_young`). Reclaim ORs
    /// this with the CPU's accessed bit (Linux: `folio_referenced_one` calls
    /// `ptep_clear_flush_young_notify`).
    public func clearYoung(start: UInt64, end: UInt64, file: StaticString = #fileID, line: UInt = #line) -> Bool {
        let site = SourceSite(file: file, line: line)
        return withReader(reason: "young check", site: site) { list in
            var young = false
            for index in 0..<list.young.count {
                // Every subscriber must be asked: each clears its own bits.
                if list.young.with(index, { $0.clearYoung(addressSpace: addressSpace, start: start, end: end) }) { young = true }
            }
            return young
        }
    }

    /// Whether any device accessed `address` recently (Linux:
    /// `mmu_notifier_test_young`); stops at the first that did.
    public func testYoung(address: UInt64, file: StaticString = #fileID, line: UInt = #line) -> Bool {
        let site = SourceSite(file: file, line: line)
        return withReader(reason: "young check", site: site) { list in
            for index in 0..<list.young.count where list.young.with(index, { $0.testYoung(addressSpace: addressSpace, address: address) }) {
                return true
            }
            return false
        }
    }

    /// Announces a new primary PTE to the subscribers that declared
    /// `.changePTE` (Linux's old `set_pte_at_notify`). Call it between the
    /// start and end of the `ksm` invalidation that changes the PTE; the
    /// other subscribers learn of it through that start and end.
    public func changePTE(_ pte: PrimaryPTE, file: StaticString = #fileID, line: UInt = #line) {
        let site = SourceSite(file: file, line: line)
        withReader(reason: "change PTE", site: site) { list in
            for index in 0..<list.changePTEListed.count { list.changePTEListed.with(index) { $0.changePTE(addressSpace: addressSpace, pte) } }
        }
    }

    /// Whether any subscriber declared `.changePTE`.
    public var hasChangePTESubscribers: Bool {
        lock.withLock { !subscribers.changePTE.isEmpty }
    }

    /// Runs `body` on the current list, counted as its reader, in a
    /// non-blockable section. The list is held by the one reference taken
    /// under the lock, dropped after the reader count (which alone does not
    /// keep it: a grace period that sees no reader lets it go).
    @inline(__always)
    private func withReader<R>(reason: StaticString, site: SourceSite, _ body: (SubscriberList) -> R) -> R {
        let list = lock.withLock { () -> Unmanaged<SubscriberList> in
            subscribers.readers.add(1, ordering: .sequentiallyConsistent)
            return .passRetained(subscribers)
        }
        let result = list._withUnsafeGuaranteedRef { list in
            ExecutionContext.enterCurrentNonBlockable(NonBlockableSection(reason: reason, site: site))
            defer { ExecutionContext.exitCurrentNonBlockable() }
            return body(list)
        }
        list._withUnsafeGuaranteedRef { releaseReader($0) }
        list.release()
        return result
    }

    // MARK: - Whole-space subscriptions

    /// Adds a whole-space subscriber (Linux: `mmu_notifier_register`). May sleep.
    ///
    /// A subscriber must not miss an invalidation that is already
    /// in flight, or it could install a translation the invalidation was
    /// about to make stale. Linux's first answer, `mm_lock` (Andrea
    /// Arcangeli, linux-kernel, 2008-05-07, "Re: [PATCH 01 of 11]
    /// mmu-notifier-core"), took every lock to stop the world. Here the new
    /// list is published at once (from then on every new invalidation
    /// includes the subscriber) and registration
    /// then waits for a grace period: until every dispatch that took the
    /// *old* list has ended. When `register` returns, no invalidation the
    /// subscriber did not see is still in progress, and invalidations never
    /// waited for the registration. The subscriber must accept callbacks
    /// from the moment it is published, and must not create translations
    /// before `register` returns.
    public func register(_ subscriber: any AddressSpaceSubscriber, file: StaticString = #fileID, line: UInt = #line) throws(SubscriptionError) {
        let site = SourceSite(file: file, line: line)
        core.sync.mightSleep(.wait, object: "notifier registration", site: site)
        core.rangeStartMap?.mightWait(site: site)
        let old = try lock.withLock { () throws(SubscriptionError) -> SubscriberList in
            guard !released else { throw .addressSpaceReleased(addressSpace) }
            return publish(SubscriberList(subscribers.all + [subscriber]))
        }
        if core.faults.contains(.skipRegistrationGracePeriod) { return }
        waitForGracePeriod(of: old, site: site)
    }

    /// Removes a whole-space subscriber (Linux: `mmu_notifier_unregister`).
    /// May sleep. When it returns, no callback to the subscriber is running
    /// or will run, and every start it received has had its end.
    public func unregister(_ subscriber: any AddressSpaceSubscriber, file: StaticString = #fileID, line: UInt = #line) throws(SubscriptionError) {
        let site = SourceSite(file: file, line: line)
        core.sync.mightSleep(.wait, object: "notifier unregistration", site: site)
        core.rangeStartMap?.mightWait(site: site)
        let old = try lock.withLock { () throws(SubscriptionError) -> SubscriberList in
            guard subscribers.contains(subscriber) else { throw .notRegistered }
            return publish(SubscriberList(subscribers.all.filter { $0 !== subscriber }))
        }
        waitForGracePeriod(of: old, site: site)
    }

    /// The address space is exiting (Linux: `__mmu_notifier_release`). In
    /// Linux's order: every interval is invalidated over the whole space
    /// with the `exit` event (`mn_itree_release`, `MMU_NOTIFY_RELEASE`);
    /// then every whole-space subscriber gets `release` *while it is still
    /// listed* (`mn_hlist_release`), so an invalidation started meanwhile
    /// (reclaim, the OOM reaper) may still reach it, before or after its
    /// release: subscribers must cope. Then they are unhooked and in-flight
    /// dispatches drain; no whole-space callback starts after `release`
    /// returns. Interval subscriptions stay in the tree: the teardown's zap
    /// (`exit_mmap` -> `unmap_vmas`) reaches them with an UNMAP-type event.
    /// No new subscription is accepted once this begins. May sleep.
    public func release(file: StaticString = #fileID, line: UInt = #line) {
        let site = SourceSite(file: file, line: line)
        core.sync.mightSleep(.wait, object: "notifier release", site: site)
        let listed = lock.withLock { () -> SubscriberList? in
            guard !released else { return nil }
            released = true
            subscribers.readers.add(1, ordering: .sequentiallyConsistent)
            return subscribers
        }
        guard let listed else { return }
        let everything = InvalidationRange(addressSpace: addressSpace, start: 0, end: .max, event: .exit)
        do {
            try begin(everything, recorder: nil, site: site, intervalsOnly: true).end()
        } catch {
            preconditionFailure("a blockable invalidation cannot be refused: \(error)")
        }
        for subscriber in listed.all { subscriber.release(addressSpace: addressSpace) }
        releaseReader(listed)
        let old = lock.withLock { publish(SubscriberList([])) }
        waitForGracePeriod(of: old, site: site)
    }

    /// Whether `release` has run.
    public var isReleased: Bool { lock.withLock { released } }

    /// Replaces the list (lock held) and returns the retired one.
    private func publish(_ list: SubscriberList) -> SubscriberList {
        lock.assertHeld()
        let old = subscribers
        subscribers = list
        old.retired.store(true, ordering: .sequentiallyConsistent)
        return old
    }

    private func waitForGracePeriod(of list: SubscriberList, site: SourceSite) {
        waitQueue.wait(file: site.file, line: site.line) { list.readers.load(ordering: .sequentiallyConsistent) == 0 }
    }

    /// The current whole-space subscribers.
    public var registeredSubscribers: [any AddressSpaceSubscriber] { lock.withLock { subscribers.all } }

    // MARK: - Introspection

    /// Counts since creation.
    public struct Statistics: Sendable, Hashable {
        public var startsByEvent: [NotifierEvent: Int]
        public var refusedStarts: Int
        public var activeInvalidations: Int
        public var wholeSpaceSubscribers: Int
        public var intervals: Int
    }

    public var statistics: Statistics {
        lock.withLock {
            var byEvent: [NotifierEvent: Int] = [:]
            for event in NotifierEvent.allCases where startsByEvent[Int(event.rawValue)] > 0 {
                byEvent[event] = startsByEvent[Int(event.rawValue)]
            }
            return Statistics(
                startsByEvent: byEvent,
                refusedStarts: refusedStarts,
                activeInvalidations: activeInvalidations,
                wholeSpaceSubscribers: subscribers.all.count,
                intervals: tree.count
            )
        }
    }

    /// Whether an invalidation is between start and end right now.
    public var isInvalidating: Bool { lock.withLock { activeInvalidations > 0 } }
}
