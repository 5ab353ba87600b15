import LabSync
import TestSupport
import Synchronization
import Testing

/// A counter deliberately not atomic: only a working lock keeps it exact.
final class UnsafeCounter: @unchecked Sendable {
    var value = 0
}

@Suite("Primitives under real threads")
struct PrimitiveTests {
    static let threads = 4
    static let iterations = stressScale * 50_000

    @Test func spinLockIsMutuallyExclusive() {
        let domain = SyncDomain()
        let lock = SpinLock("counter", domain: domain)
        let counter = UnsafeCounter()
        let workers = (0..<Self.threads).map { i in
            domain.spawnThread(named: "spin-\(i)") {
                for _ in 0..<Self.iterations { lock.withLock { counter.value += 1 } }
            }
        }
        workers.forEach { $0.join() }
        #expect(counter.value == Self.threads * Self.iterations)
        #expect(domain.contextViolations.count == 0)
    }

    @Test func sleepingLockIsMutuallyExclusive() {
        let domain = SyncDomain()
        let lock = SleepingLock("counter", domain: domain)
        let counter = UnsafeCounter()
        let workers = (0..<Self.threads).map { i in
            domain.spawnThread(named: "mutex-\(i)") {
                for _ in 0..<Self.iterations { lock.withLock { counter.value += 1 } }
            }
        }
        workers.forEach { $0.join() }
        #expect(counter.value == Self.threads * Self.iterations)
    }

    @Test func spinLockTryLockFailsWhileHeld() {
        let domain = SyncDomain()
        let lock = SpinLock("held", domain: domain)
        let holding = Completion("holding", domain: domain)
        let release = Completion("release", domain: domain)
        let holder = domain.spawnThread(named: "holder") {
            lock.lock()
            holding.complete()
            release.wait()
            lock.unlock()
        }
        holding.wait()
        #expect(!lock.tryLock())
        #expect(ExecutionContext.current.nonBlockableDepth == 0, "a failed tryLock opens no section")
        release.complete()
        holder.join()
        #expect(lock.tryLock())
        lock.unlock()
    }

    @Test func waitQueueWakesEveryWaiterOnceTheConditionHolds() {
        let domain = SyncDomain()
        let queue = WaitQueue("gate", domain: domain)
        let open = Atomic<Bool>(false)
        let passed = Atomic<Int>(0)
        let waiters = (0..<6).map { i in
            domain.spawnThread(named: "waiter-\(i)") {
                queue.wait { open.load(ordering: .sequentiallyConsistent) }
                passed.add(1, ordering: .sequentiallyConsistent)
            }
        }
        domain.sleep(for: .milliseconds(20))
        #expect(passed.load(ordering: .sequentiallyConsistent) == 0, "nobody passes a closed gate")
        open.store(true, ordering: .sequentiallyConsistent)
        queue.wakeAll()
        waiters.forEach { $0.join() }
        #expect(passed.load(ordering: .sequentiallyConsistent) == 6)
    }

    @Test func waitQueueTimesOutWhenTheConditionNeverHolds() {
        let domain = SyncDomain()
        let queue = WaitQueue("never", domain: domain)
        let start = domain.now()
        let satisfied = queue.wait(timeout: .milliseconds(30)) { false }
        #expect(!satisfied)
        #expect(domain.now() - start >= .milliseconds(30))
    }

    @Test func completionLetsOneWaiterThroughPerComplete() {
        let domain = SyncDomain()
        let done = Completion("one-shot", domain: domain)
        done.complete()
        #expect(done.wait(timeout: .milliseconds(1)))
        #expect(!done.wait(timeout: .milliseconds(5)), "one complete, one waiter")
        done.completeAll()
        #expect(done.wait(timeout: .milliseconds(1)))
        #expect(done.wait(timeout: .milliseconds(1)), "completeAll lets every waiter through")
        done.reinit()
        #expect(!done.isDone)
    }

    @Test func completionHandsOffAcrossThreads() {
        let domain = SyncDomain()
        let ping = Completion("ping", domain: domain)
        let pong = Completion("pong", domain: domain)
        let rounds = 2_000
        let peer = domain.spawnThread(named: "pong") {
            for _ in 0..<rounds {
                ping.wait()
                pong.complete()
            }
        }
        for _ in 0..<rounds {
            ping.complete()
            #expect(pong.wait(timeout: .seconds(10)))
        }
        peer.join()
    }

    @Test func sleepLastsAtLeastTheRequestedTime() {
        let domain = SyncDomain()
        let start = domain.now()
        domain.sleep(for: .milliseconds(15))
        #expect(domain.now() - start >= .milliseconds(15))
    }

    @Test func seededStreamsReplay() {
        var a = SplitMix64.stream(3, of: 42)
        var b = SplitMix64.stream(3, of: 42)
        var c = SplitMix64.stream(4, of: 42)
        let first = (0..<8).map { _ in a.next() }
        #expect(first == (0..<8).map { _ in b.next() })
        #expect(first != (0..<8).map { _ in c.next() })
    }
}

@Suite("Reader-writer lock")
struct SleepingRWLockTests {
    @Test func writersExcludeEveryoneAndReadersShare() {
        let domain = SyncDomain()
        let lock = SleepingRWLock("mmap", domain: domain)
        let counter = UnsafeCounter()
        let readersInside = Atomic<Int>(0)
        let maxReaders = Atomic<Int>(0)
        let iterations = stressScale * 5_000
        let writers = (0..<2).map { i in
            domain.spawnThread(named: "writer-\(i)") {
                for _ in 0..<iterations {
                    lock.withExclusive {
                        #expect(readersInside.load(ordering: .sequentiallyConsistent) == 0)
                        counter.value += 1
                    }
                }
            }
        }
        let readers = (0..<3).map { i in
            domain.spawnThread(named: "reader-\(i)") {
                for _ in 0..<iterations {
                    lock.withShared {
                        let now = readersInside.add(1, ordering: .sequentiallyConsistent).newValue
                        var seen = maxReaders.load(ordering: .relaxed)
                        while now > seen {
                            let (done, actual) = maxReaders.compareExchange(expected: seen, desired: now, ordering: .relaxed)
                            if done { break }
                            seen = actual
                        }
                        readersInside.subtract(1, ordering: .sequentiallyConsistent)
                    }
                }
            }
        }
        (writers + readers).forEach { $0.join() }
        #expect(counter.value == 2 * iterations)
        #expect(lock.tryLockExclusive())
        #expect(!lock.tryLockShared(), "a writer excludes readers")
        lock.unlockExclusive()
        #expect(lock.tryLockShared())
        #expect(lock.tryLockShared(), "readers share")
        #expect(!lock.tryLockExclusive())
        lock.unlockShared()
        lock.unlockShared()
    }

    @Test func acquiringInANonBlockableSectionIsAViolation() {
        let domain = SyncDomain()
        let lock = SleepingRWLock("mmap", domain: domain)
        ExecutionContext.current.withNonBlockableSection(reason: "test") {
            lock.withShared {}
            if lock.tryLockExclusive() { lock.unlockExclusive() }
        }
        #expect(domain.contextViolations.snapshot.map(\.object) == ["mmap"])
    }
}
