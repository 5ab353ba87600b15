import Synchronization
import LabSync
import MMUNotifier
import Testing

@Suite("Dispatch rules of whole-space subscriptions")
struct DispatchTests {
    let core = NotifierCore()
    let mm = AddressSpaceID(1)

    @Test func startGoesToEveryoneAndEndOnlyToThoseWhoseStartSucceeded() throws {
        let notifiers = core.makeAddressSpaceNotifiers(for: mm)
        let a = RecordingSubscriber("a", domain: core.sync)
        let misbehaving = RecordingSubscriber("b", domain: core.sync, answer: .retry)
        let c = RecordingSubscriber("c", domain: core.sync)
        for s in [a, misbehaving, c] { try notifiers.register(s) }

        let r = range(mm, pages: 0..<4, .munmap)
        notifiers.startInvalidation(r).end()

        #expect(a.calls == [.start(r, nonBlockable: false), .end(r, nonBlockable: false)])
        #expect(misbehaving.calls == [.start(r, nonBlockable: false)], "no end after a failed start")
        #expect(c.calls == [.start(r, nonBlockable: false), .end(r, nonBlockable: false)])
        let violations = core.contractViolations.snapshot
        try #require(violations.count == 1)
        #expect(violations[0].kind == .retryFromBlockableStart(subscriber: "b"))
        #expect(violations[0].range == r)
    }

    /// The scenario: in a non-blockable dispatch one subscriber sleeps
    /// (a context violation) and one answers retry (its end is not called,
    /// the caller sees the failure).
    @Test func nonBlockableDispatchWithASleeperAndARefuser() throws {
        let notifiers = core.makeAddressSpaceNotifiers(for: mm)
        let sleeper = RecordingSubscriber("sleeper", domain: core.sync, sleepInStart: true)
        let refuser = RecordingSubscriber("refuser", domain: core.sync, answer: .retry)
        let after = RecordingSubscriber("after", domain: core.sync)
        for s in [sleeper, refuser, after] { try notifiers.register(s) }

        let r = range(mm, pages: 0..<16, .oomReap, blockable: false)
        var refusal: InvalidationRefused? = nil
        do {
            let active = try notifiers.tryStartInvalidation(r)
            active.end()
        } catch {
            refusal = error
        }

        let failure = try #require(refusal, "the caller must see the failure")
        #expect(failure.refusedBy == "refuser")
        #expect(failure.range == r)
        // The sleeper started, so it is backed out with its end; the refuser gets no end.
        #expect(sleeper.calls == [.start(r, nonBlockable: true), .end(r, nonBlockable: true)])
        #expect(refuser.calls == [.start(r, nonBlockable: true)])
        #expect(after.calls.isEmpty, "dispatch stops at the first refusal")

        let sleeps = core.sync.contextViolations.snapshot
        try #require(sleeps.count == 1)
        #expect(sleeps[0].operation == .sleep)
        #expect(sleeps[0].context.reason == "non-blockable invalidation")
        #expect(sleeps[0].context.subject == "oomReap")
        #expect(core.contractViolations.count == 0, "retry from a non-blockable start is allowed")
        #expect(notifiers.statistics.refusedStarts == 1)
        #expect(!notifiers.isInvalidating, "a refused start leaves nothing active")
    }

    @Test func everyCallbackOfANonBlockableRangeIsNonBlockableAndBlockableOnesAreNot() throws {
        let notifiers = core.makeAddressSpaceNotifiers(for: mm)
        let s = RecordingSubscriber("s", domain: core.sync)
        try notifiers.register(s)
        let nb = range(mm, pages: 0..<1, .oomReap, blockable: false)
        let b = range(mm, pages: 0..<1, .vmscan)
        try notifiers.tryStartInvalidation(nb).end()
        notifiers.startInvalidation(b).end()
        #expect(s.calls == [
            .start(nb, nonBlockable: true), .end(nb, nonBlockable: true),
            .start(b, nonBlockable: false), .end(b, nonBlockable: false),
        ])
        #expect(!ExecutionContext.current.isNonBlockable)
    }

    @Test func atomicCallbacksRunInNonBlockableSectionsAndOnlyOnCapableSubscribers() throws {
        let notifiers = core.makeAddressSpaceNotifiers(for: mm)
        let capable = RecordingSubscriber(
            "capable", domain: core.sync, capabilities: [.changePTE, .youngTracking, .secondaryTLB], young: true)
        let plain = RecordingSubscriber("plain", domain: core.sync, young: true)
        try notifiers.register(capable)
        try notifiers.register(plain)
        let r = range(mm, pages: 0..<2, .vmscan)
        let pte = PrimaryPTE(address: 0, frame: PageFrameNumber(7), writable: false)

        notifiers.invalidateSecondaryTLBs(r)
        #expect(notifiers.clearYoung(start: r.start, end: r.end))
        #expect(notifiers.testYoung(address: 0))
        notifiers.changePTE(pte)

        #expect(capable.calls == [
            .secondaryTLB(r, nonBlockable: true), .clearYoung(nonBlockable: true),
            .testYoung(nonBlockable: true), .changePTE(pte, nonBlockable: true),
        ])
        #expect(plain.calls.isEmpty, "capabilities gate the optional callbacks")
        #expect(notifiers.hasChangePTESubscribers)
    }

    @Test func clearYoungAsksEveryTrackerAndOrsTheAnswersWhileTestYoungStopsAtTheFirst() throws {
        let notifiers = core.makeAddressSpaceNotifiers(for: mm)
        let hot = RecordingSubscriber("hot", domain: core.sync, capabilities: .youngTracking, young: true)
        let cold = RecordingSubscriber("cold", domain: core.sync, capabilities: .youngTracking, young: false)
        try notifiers.register(hot)
        try notifiers.register(cold)
        #expect(notifiers.clearYoung(start: 0, end: pageSize))
        #expect(hot.calls.count == 1 && cold.calls.count == 1, "each tracker clears its own bits")
        #expect(notifiers.testYoung(address: 0))
        #expect(hot.calls.count == 2 && cold.calls.count == 1, "testYoung stops at the first young answer")

        let onlyCold = core.makeAddressSpaceNotifiers(for: AddressSpaceID(2))
        try onlyCold.register(RecordingSubscriber("cold", domain: core.sync, capabilities: .youngTracking))
        #expect(!onlyCold.clearYoung(start: 0, end: pageSize))
        #expect(!onlyCold.testYoung(address: 0))
    }

    @Test func droppingAStartedInvalidationIsRecordedAndEndedAnyway() throws {
        let notifiers = core.makeAddressSpaceNotifiers(for: mm)
        let s = RecordingSubscriber("s", domain: core.sync)
        try notifiers.register(s)
        let r = range(mm, pages: 0..<1, .mprotect)
        let line: UInt = #line + 1
        _ = notifiers.startInvalidation(r)  // dropped: never ended
        let violation = try #require(core.contractViolations.snapshot.first)
        #expect(violation.kind == .unpairedStart)
        #expect(violation.site.line == line)
        #expect(s.calls == [.start(r, nonBlockable: false), .end(r, nonBlockable: false)])
        #expect(!notifiers.isInvalidating)
    }

    @Test func dispatchReachesOnlyTheTargetAddressSpace() throws {
        let first = core.makeAddressSpaceNotifiers(for: AddressSpaceID(10))
        let second = core.makeAddressSpaceNotifiers(for: AddressSpaceID(11))
        let mine = RecordingSubscriber("mine", domain: core.sync, capabilities: .youngTracking)
        let other = RecordingSubscriber("other", domain: core.sync, capabilities: .youngTracking)
        try first.register(mine)
        try second.register(other)
        first.startInvalidation(range(AddressSpaceID(10), pages: 0..<8, .munmap)).end()
        _ = first.clearYoung(start: 0, end: pageSize)
        #expect(mine.calls.count == 3)
        #expect(other.calls.isEmpty)
        #expect(first.statistics.startsByEvent == [.munmap: 1])
        #expect(second.statistics.startsByEvent.isEmpty)
    }

    @Test func releaseCallsReleaseOnceThenUnhooksEverySubscriber() throws {
        let notifiers = core.makeAddressSpaceNotifiers(for: mm)
        let s = RecordingSubscriber("s", domain: core.sync)
        try notifiers.register(s)
        notifiers.release()
        notifiers.release()  // idempotent
        notifiers.startInvalidation(range(mm, pages: 0..<1, .exit)).end()
        #expect(s.calls == [.release], "the release's interval invalidation is for intervals only, and no callback follows a release")
        #expect(notifiers.isReleased)
        #expect(throws: SubscriptionError.addressSpaceReleased(mm)) {
            try notifiers.register(RecordingSubscriber("late", domain: core.sync))
        }
    }

    /// Linux's `mn_hlist_release` calls `release` while the subscription
    /// is still listed: an invalidation that starts meanwhile (reclaim, the
    /// OOM reaper) still reaches a subscriber whose release has run.
    @Test func releaseRunsWhileSubscriptionsAreStillListed() throws {
        final class Racing: AddressSpaceSubscriber, @unchecked Sendable {
            let notifiers: AddressSpaceNotifiers
            let range: InvalidationRange
            let log = Mutex<[String]>([])
            init(_ notifiers: AddressSpaceNotifiers, _ range: InvalidationRange) {
                self.notifiers = notifiers
                self.range = range
            }
            func invalidateRangeStart(_ range: InvalidationRange) -> StartResult {
                log.withLock { $0.append("start") }
                return .ok
            }
            func invalidateRangeEnd(_ range: InvalidationRange) { log.withLock { $0.append("end") } }
            func release(addressSpace: AddressSpaceID) {
                log.withLock { $0.append("release") }
                notifiers.startInvalidation(range).end()  // reclaim racing the exit
            }
        }
        let notifiers = core.makeAddressSpaceNotifiers(for: mm)
        let racing = Racing(notifiers, range(mm, pages: 0..<1, .vmscan))
        try notifiers.register(racing)
        notifiers.release()
        #expect(racing.log.withLock { $0 } == ["release", "start", "end"])
        notifiers.startInvalidation(range(mm, pages: 0..<1, .vmscan)).end()
        #expect(racing.log.withLock { $0 }.count == 3, "unhooked once release returned")
    }

    @Test func unregisterStopsCallbacksAndRejectsStrangers() throws {
        let notifiers = core.makeAddressSpaceNotifiers(for: mm)
        let s = RecordingSubscriber("s", domain: core.sync)
        try notifiers.register(s)
        try notifiers.unregister(s)
        notifiers.startInvalidation(range(mm, pages: 0..<1, .munmap)).end()
        #expect(s.calls.isEmpty)
        #expect(throws: SubscriptionError.notRegistered) { try notifiers.unregister(s) }
    }

    @Test func everyEventMapsToALinuxEvent() {
        let linux: Set = [
            "MMU_NOTIFY_UNMAP", "MMU_NOTIFY_CLEAR", "MMU_NOTIFY_PROTECTION_VMA", "MMU_NOTIFY_PROTECTION_PAGE",
            "MMU_NOTIFY_SOFT_DIRTY", "MMU_NOTIFY_RELEASE", "MMU_NOTIFY_MIGRATE", "MMU_NOTIFY_EXCLUSIVE",
        ]
        #expect(NotifierEvent.allCases.count == 16)
        for event in NotifierEvent.allCases { #expect(linux.contains(event.linuxEvent), "\(event)") }
    }

    @Test func migrateCarriesItsOwner() {
        let me = OwnerCookie(42)
        let r = InvalidationRange(addressSpace: mm, start: 0, end: pageSize, event: .migrate, owner: me)
        #expect(r.owner == me)
        #expect(r.description.contains("owner#42"))
    }
}

@Suite("Past 64 subscribers")
struct ManySubscribersTests {
    /// The skipped set used to be 64 bits: a subscriber past the 64th that
    /// answered retry to a blockable start still got an end.
    @Test func aRefusingSubscriberPastTheSixtyFourthGetsNoEndAndTheOthersDo() throws {
        let core = NotifierCore()
        let mm = AddressSpaceID(1)
        let notifiers = core.makeAddressSpaceNotifiers(for: mm)
        let refusing: Set<Int> = [3, 64, 65, 130]
        let subscribers = (0..<140).map { index in
            RecordingSubscriber("s\(index)", domain: core.sync, answer: refusing.contains(index) ? .retry : .ok)
        }
        for subscriber in subscribers { try notifiers.register(subscriber) }
        let r = range(mm, pages: 0..<1, .munmap)
        notifiers.startInvalidation(r).end()
        for (index, subscriber) in subscribers.enumerated() {
            let ends = subscriber.calls.filter { if case .end = $0 { return true } else { return false } }.count
            #expect(ends == (refusing.contains(index) ? 0 : 1), "subscriber \(index): \(subscriber.calls)")
        }
        #expect(core.contractViolations.count == refusing.count)
    }
}
