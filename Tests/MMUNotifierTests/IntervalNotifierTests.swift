import LabSync
import MMUNotifier
import Synchronization
import Testing

/// A device range that records invalidations and follows the contract:
/// under its lock, set the sequence, then answer.
final class RecordingInterval: IntervalInvalidator, @unchecked Sendable {
    let intervalName: String
    let answer: Bool
    let lock = Mutex<[(InvalidationRange, UInt64)]>([])
    init(_ name: String, answer: Bool = true) {
        intervalName = name
        self.answer = answer
    }
    var invalidations: [(InvalidationRange, UInt64)] { lock.withLock { $0 } }
    func invalidate(_ interval: IntervalNotifier, range: InvalidationRange, currentSeq: UInt64) -> Bool {
        guard answer else { return false }
        lock.withLock { log in
            interval.setSeq(currentSeq)
            log.append((range, currentSeq))
        }
        return true
    }
}

@Suite("Interval subscriptions and the sequence count")
struct IntervalNotifierTests {
    let core = NotifierCore()
    let mm = AddressSpaceID(7)

    @Test func onlyOverlappingIntervalsAreInvalidatedWithHalfOpenBounds() throws {
        let notifiers = core.makeAddressSpaceNotifiers(for: mm)
        let low = RecordingInterval("low")
        let high = RecordingInterval("high")
        _ = try notifiers.insertInterval(start: 0, end: 4 * pageSize, ops: low)
        _ = try notifiers.insertInterval(start: 4 * pageSize, end: 8 * pageSize, ops: high)

        let touchingLowOnly = range(mm, pages: 3..<4, .vmscan)
        notifiers.startInvalidation(touchingLowOnly).end()
        #expect(low.invalidations.count == 1)
        #expect(high.invalidations.isEmpty, "[3,4) ends where high begins")

        notifiers.startInvalidation(range(mm, pages: 0..<100, .munmap)).end()
        #expect(low.invalidations.count == 2 && high.invalidations.count == 1)
        for (_, seq) in low.invalidations + high.invalidations {
            #expect(seq % 2 == 1, "the sequence handed to invalidate is odd")
        }
    }

    @Test func readRetryDetectsAnInvalidationSinceReadBegin() throws {
        let notifiers = core.makeAddressSpaceNotifiers(for: mm)
        let ops = RecordingInterval("dev")
        let interval = try notifiers.insertInterval(start: 0, end: 16 * pageSize, ops: ops)
        let seq = interval.readBegin()
        #expect(!interval.readRetry(seq))
        notifiers.startInvalidation(range(mm, pages: 20..<30, .munmap)).end()
        #expect(!interval.readRetry(seq), "an invalidation elsewhere does not disturb the interval")
        notifiers.startInvalidation(range(mm, pages: 2..<3, .migrate)).end()
        #expect(interval.readRetry(seq))
        #expect(interval.checkRetry(seq))
        let again = interval.readBegin()
        #expect(!interval.readRetry(again))
        #expect(again != seq)
    }

    @Test func readBeginSleepsWhileAnInvalidationOfTheIntervalIsInProgress() throws {
        let notifiers = core.makeAddressSpaceNotifiers(for: mm)
        let interval = try notifiers.insertInterval(start: 0, end: pageSize, ops: RecordingInterval("dev"))
        let active = notifiers.startInvalidation(range(mm, pages: 0..<1, .vmscan))
        let returned = Atomic<Bool>(false)
        let reader = core.sync.spawnThread(named: "device-fault") {
            _ = interval.readBegin()
            returned.store(true, ordering: .sequentiallyConsistent)
        }
        core.sync.sleep(for: .milliseconds(30))
        let returnedNow = returned.load(ordering: .sequentiallyConsistent)
        #expect(!returnedNow, "readBegin must wait for the end")
        active.end()
        reader.join()
        let returnedFinally = returned.load(ordering: .sequentiallyConsistent)
        #expect(returnedFinally)
    }

    @Test func readBeginInANonBlockableSectionIsAContextViolationWhenItMustWait() throws {
        let notifiers = core.makeAddressSpaceNotifiers(for: mm)
        let interval = try notifiers.insertInterval(start: 0, end: pageSize, ops: RecordingInterval("dev"))
        let active = InvalidationBox(notifiers.startInvalidation(range(mm, pages: 0..<1, .vmscan)))
        let sync = core.sync
        let ender = sync.spawnThread(named: "ender") {
            sync.sleep(for: .milliseconds(10))
            active.end()
        }
        ExecutionContext.current.withNonBlockableSection(reason: "device interrupt") {
            _ = interval.readBegin()
        }
        ender.join()
        #expect(core.sync.contextViolations.snapshot.map(\.operation) == [.wait])
    }

    @Test func insertDuringAnInvalidationIsDeferredAndItsReaderWaits() throws {
        let notifiers = core.makeAddressSpaceNotifiers(for: mm)
        let active = notifiers.startInvalidation(range(mm, pages: 0..<8, .munmap))
        let ops = RecordingInterval("late")
        let interval = try notifiers.insertInterval(start: 0, end: 8 * pageSize, ops: ops)
        #expect(notifiers.intervalCount == 0, "not in the tree while an invalidation is active")
        #expect(ops.invalidations.isEmpty)

        let began = Atomic<Bool>(false)
        let reader = core.sync.spawnThread(named: "reader") {
            _ = interval.readBegin()
            began.store(true, ordering: .sequentiallyConsistent)
        }
        core.sync.sleep(for: .milliseconds(20))
        let beganNow = began.load(ordering: .sequentiallyConsistent)
        #expect(!beganNow, "a deferred interval's reader waits (forced retry)")
        active.end()
        reader.join()
        #expect(notifiers.intervalCount == 1)
        notifiers.startInvalidation(range(mm, pages: 1..<2, .vmscan)).end()
        #expect(ops.invalidations.count == 1)
    }

    @Test func removeDuringAnInvalidationWaitsAndNoCallbackFollows() throws {
        let notifiers = core.makeAddressSpaceNotifiers(for: mm)
        let ops = RecordingInterval("going")
        let interval = try notifiers.insertInterval(start: 0, end: 4 * pageSize, ops: ops)
        let active = notifiers.startInvalidation(range(mm, pages: 0..<4, .munmap))
        #expect(ops.invalidations.count == 1)
        let removed = Atomic<Bool>(false)
        let remover = core.sync.spawnThread(named: "remover") {
            try? notifiers.removeInterval(interval)
            removed.store(true, ordering: .sequentiallyConsistent)
        }
        core.sync.sleep(for: .milliseconds(20))
        let removedNow = removed.load(ordering: .sequentiallyConsistent)
        #expect(!removedNow, "removal waits for the active invalidation")
        active.end()
        remover.join()
        #expect(notifiers.intervalCount == 0)
        notifiers.startInvalidation(range(mm, pages: 0..<4, .munmap)).end()
        #expect(ops.invalidations.count == 1, "no callback after removal returned")
        #expect(throws: SubscriptionError.notRegistered) { try notifiers.removeInterval(interval) }
    }

    @Test func insertThenRemoveWhileDeferredNeverReachesTheTree() throws {
        let notifiers = core.makeAddressSpaceNotifiers(for: mm)
        let active = notifiers.startInvalidation(range(mm, pages: 0..<1, .munmap))
        let interval = try notifiers.insertInterval(start: 0, end: pageSize, ops: RecordingInterval("x"))
        try notifiers.removeInterval(interval)  // must not wait: it was never inserted
        active.end()
        #expect(notifiers.intervalCount == 0)
    }

    @Test func aNonBlockableRefusalFromAnIntervalFailsTheStart() throws {
        let notifiers = core.makeAddressSpaceNotifiers(for: mm)
        _ = try notifiers.insertInterval(start: 0, end: pageSize, ops: RecordingInterval("busy-gpu", answer: false))
        let whole = RecordingSubscriber("whole", domain: core.sync)
        try notifiers.register(whole)
        let r = range(mm, pages: 0..<1, .oomReap, blockable: false)
        #expect(throws: InvalidationRefused.self) { try notifiers.tryStartInvalidation(r).end() }
        #expect(whole.calls.isEmpty, "intervals go first; a refusal there starts nothing else")
        #expect(!notifiers.isInvalidating)

        notifiers.startInvalidation(range(mm, pages: 0..<1, .munmap)).end()
        #expect(core.contractViolations.snapshot.map(\.kind) == [.retryFromBlockableStart(subscriber: "busy-gpu")])
    }

    @Test func releaseInvalidatesEveryIntervalWithTheExitEvent() throws {
        let notifiers = core.makeAddressSpaceNotifiers(for: mm)
        let low = RecordingInterval("low")
        let high = RecordingInterval("high")
        _ = try notifiers.insertInterval(start: 0, end: pageSize, ops: low)
        _ = try notifiers.insertInterval(start: 1 << 40, end: (1 << 40) + pageSize, ops: high)
        notifiers.release()
        #expect(low.invalidations.map(\.0.event) == [.exit])
        #expect(high.invalidations.map(\.0.event) == [.exit])
        #expect(throws: SubscriptionError.addressSpaceReleased(mm)) {
            try notifiers.insertInterval(start: 0, end: pageSize, ops: RecordingInterval("late"))
        }
    }

    @Test func nonBlockableIntervalCallbacksRunInANonBlockableSection() throws {
        final class Probe: IntervalInvalidator, @unchecked Sendable {
            let seen = Mutex<[Bool]>([])
            func invalidate(_ interval: IntervalNotifier, range: InvalidationRange, currentSeq: UInt64) -> Bool {
                seen.withLock { $0.append(ExecutionContext.current.isNonBlockable) }
                return true
            }
        }
        let notifiers = core.makeAddressSpaceNotifiers(for: mm)
        let probe = Probe()
        _ = try notifiers.insertInterval(start: 0, end: pageSize, ops: probe)
        try notifiers.tryStartInvalidation(range(mm, pages: 0..<1, .oomReap, blockable: false)).end()
        notifiers.startInvalidation(range(mm, pages: 0..<1, .munmap)).end()
        #expect(probe.seen.withLock { $0 } == [true, false])
    }
}
