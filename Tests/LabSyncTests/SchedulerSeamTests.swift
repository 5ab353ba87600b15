import LabSync
import Synchronization
import Testing

/// A scheduler that forwards to the free-running one and counts what passes
/// through it: the seam a controlled, seeded scheduler will take over.
final class CountingScheduler: Scheduler {
    let inner = FreeRunningScheduler()
    let monitors = Atomic<Int>(0)
    let spawns = Atomic<Int>(0)
    let sleeps = Atomic<Int>(0)
    let spins = Atomic<Int>(0)

    func makeMonitor() -> any Monitor {
        monitors.add(1, ordering: .relaxed)
        return inner.makeMonitor()
    }
    func spawn(name: String, _ body: @escaping @Sendable () -> Void) -> any ThreadHandle {
        spawns.add(1, ordering: .relaxed)
        return inner.spawn(name: name, body)
    }
    func sleep(for duration: Duration) {
        sleeps.add(1, ordering: .relaxed)
        inner.sleep(for: duration)
    }
    func spinWait(attempt: Int) {
        spins.add(1, ordering: .relaxed)
        inner.spinWait(attempt: attempt)
    }
    func yield() { inner.yield() }
    func now() -> Duration { inner.now() }
}

@Suite("The scheduler seam")
struct SchedulerSeamTests {
    @Test func everyPrimitiveBlocksThroughTheDomainsScheduler() {
        let scheduler = CountingScheduler()
        let domain = SyncDomain(scheduler: scheduler)
        let mutex = SleepingLock("m", domain: domain)
        let queue = WaitQueue("q", domain: domain)
        let done = Completion("c", domain: domain)
        #expect(scheduler.monitors.load(ordering: .relaxed) == 3, "sleeping lock, wait queue and completion each own a scheduler monitor")

        let spin = SpinLock("s", domain: domain)
        let holding = Completion("holding", domain: domain)
        let release = Completion("release", domain: domain)
        let holder = domain.spawnThread(named: "holder") {
            spin.lock()
            holding.complete()
            release.wait()
            spin.unlock()
        }
        holding.wait()
        let contender = domain.spawnThread(named: "contender") { spin.withLock {} }
        // Until the contender is seen spinning (bounded: a loaded machine may
        // take a while to schedule it).
        for _ in 0..<2_000 where scheduler.spins.load(ordering: .relaxed) == 0 { domain.sleep(for: .milliseconds(1)) }
        release.complete()
        holder.join()
        contender.join()
        #expect(scheduler.spawns.load(ordering: .relaxed) == 2)
        #expect(scheduler.spins.load(ordering: .relaxed) > 0, "a contended spin lock waits through spinWait")
        // The wait loop above may not have slept (the contender can be seen
        // spinning at once): sleep once for sure.
        domain.sleep(for: .microseconds(10))
        #expect(scheduler.sleeps.load(ordering: .relaxed) >= 1)

        mutex.withLock {}
        queue.wakeAll()
        done.complete()
        done.wait()
    }
}
