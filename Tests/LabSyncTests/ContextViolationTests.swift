import LabSync
import Testing

@Suite("Context checks: sleeping where sleeping is forbidden")
struct ContextViolationTests {
    @Test func sleepOutsideAnyNonBlockableSectionIsAllowed() {
        let domain = SyncDomain()
        domain.sleep(for: .microseconds(10))
        let lock = SleepingLock("plain", domain: domain)
        lock.withLock {}
        #expect(domain.contextViolations.count == 0)
    }

    @Test func sleepInsideNonBlockableSectionIsRecordedWithSiteContextAndThread() throws {
        let domain = SyncDomain()
        let context = ExecutionContext.current
        let line: UInt = #line + 2
        context.withNonBlockableSection(reason: "non-blockable invalidation", subject: "oomReap") {
            domain.sleep(for: .microseconds(1))
        }
        let violations = domain.contextViolations.snapshot
        try #require(violations.count == 1)
        let violation = violations[0]
        #expect(violation.operation == .sleep)
        #expect(violation.site.line == line)
        #expect("\(violation.site.file)".hasSuffix("ContextViolationTests.swift"))
        #expect(violation.context.reason == "non-blockable invalidation")
        #expect(violation.context.subject == "oomReap")
        #expect(violation.thread.tid == context.thread.tid)
        #expect(violation.description.contains("sleeping function called from invalid context"))
        #expect(!context.isNonBlockable, "the section must be closed after the body")
    }

    @Test func sleepingLockUnderSpinLockIsAViolationButTryLockIsNot() throws {
        let domain = SyncDomain()
        let spin = SpinLock("device spin", domain: domain)
        let mutex = SleepingLock("device mutex", domain: domain)
        spin.withLock {
            #expect(ExecutionContext.current.isNonBlockable, "holding a spin lock makes the thread non-blockable")
            if mutex.tryLock() { mutex.unlock() }
        }
        #expect(domain.contextViolations.count == 0, "tryLock never sleeps")
        spin.withLock {
            mutex.withLock {}
        }
        let violations = domain.contextViolations.snapshot
        try #require(violations.count == 1)
        #expect(violations[0].operation == .sleepingLockAcquire)
        #expect(violations[0].object == "device mutex")
        #expect(violations[0].context.reason == "spin lock")
        #expect(violations[0].context.subject == "device spin")
    }

    @Test func waitQueueAndCompletionWaitsAreViolationsInNonBlockableSections() {
        let domain = SyncDomain()
        let queue = WaitQueue("q", domain: domain)
        let done = Completion("c", domain: domain)
        done.complete()
        ExecutionContext.current.withNonBlockableSection(reason: "test") {
            queue.wait { true }  // condition already true: still a possible sleep
            done.wait()
        }
        let operations = domain.contextViolations.snapshot.map(\.operation)
        #expect(operations == [.wait, .completionWait])
    }

    @Test func wakingIsAllowedInNonBlockableSections() {
        let domain = SyncDomain()
        let queue = WaitQueue("q", domain: domain)
        let done = Completion("c", domain: domain)
        ExecutionContext.current.withNonBlockableSection(reason: "test") {
            queue.wakeAll()
            done.complete()
            done.completeAll()
        }
        #expect(domain.contextViolations.count == 0)
    }

    @Test func nestedSectionsReportTheInnermostAndTheDepth() throws {
        let domain = SyncDomain()
        let context = ExecutionContext.current
        context.withNonBlockableSection(reason: "outer") {
            context.withNonBlockableSection(reason: "inner") {
                domain.sleep(for: .zero)
            }
            #expect(context.nonBlockableDepth == 1)
        }
        #expect(context.nonBlockableDepth == 0)
        let violation = try #require(domain.contextViolations.snapshot.first)
        #expect(violation.context.reason == "inner")
        #expect(violation.depth == 2)
    }

    @Test func violationsNameTheSpawnedThread() throws {
        let domain = SyncDomain()
        let thread = domain.spawnThread(named: "oom-reaper") {
            ExecutionContext.current.withNonBlockableSection(reason: "non-blockable invalidation") {
                domain.sleep(for: .zero)
            }
        }
        thread.join()
        let violation = try #require(domain.contextViolations.snapshot.first)
        #expect(violation.thread.name == "oom-reaper")
        #expect(violation.thread.tid != ExecutionContext.current.thread.tid)
    }

    @Test func domainsDoNotShareViolations() {
        let first = SyncDomain()
        let second = SyncDomain()
        ExecutionContext.current.withNonBlockableSection(reason: "test") {
            first.sleep(for: .zero)
        }
        #expect(first.contextViolations.count == 1)
        #expect(second.contextViolations.count == 0)
    }

    @Test func reportLogKeepsCountingPastItsCapacity() {
        let log = ReportLog<Int>(capacity: 3)
        for i in 0..<10 { log.record(i) }
        #expect(log.count == 10)
        #expect(log.snapshot == [0, 1, 2])
        #expect(log.drain() == [0, 1, 2])
        #expect(log.count == 0)
    }

    @Test func reclaimContextNests() {
        let context = ExecutionContext.current
        #expect(!context.isInReclaim)
        context.withReclaimContext {
            context.withReclaimContext { #expect(context.isInReclaim) }
            #expect(context.isInReclaim)
        }
        #expect(!context.isInReclaim)
    }
}
