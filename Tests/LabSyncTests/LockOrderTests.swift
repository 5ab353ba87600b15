import LabSync
import Testing
import TestSupport

/// The lab's lockdep (`LockOrderValidator`): an order seen one way and
/// then the other is a possible inversion, reported once with both chains,
/// before anything blocks; consistent orders, trylocks and nesting within
/// one class are not; a lock taken under reclaim and held around an
/// allocation that may reclaim is an inversion through `reclaim`.
@Suite("Lock order (lockdep)")
struct LockOrderTests {
    /// Runs `body` on a thread of its own and waits for it.
    static func onThread(_ domain: SyncDomain, _ name: String, _ body: @escaping @Sendable () -> Void) {
        domain.spawnThread(named: name, body).join()
    }

    @Test func anOrderSeenBothWaysIsReportedOnceWithBothChains() throws {
        let domain = SyncDomain(lockOrder: true)
        let a = SleepingLock("a", domain: domain, orderClass: "class a")
        let b = SpinLock("b", domain: domain, orderClass: "class b")
        Self.onThread(domain, "first") { a.withLock { b.withLock {} } }
        #expect(domain.lockOrder!.violations.count == 0, "one order is no cycle")
        // The second thread takes them the other way round: never at the same
        // time as the first, so nothing deadlocks; the possibility is reported.
        Self.onThread(domain, "second") {
            b.lock()
            // tryLock adds no edge into the lock it takes.
            if a.tryLock() { a.unlock() }
            b.unlock()
        }
        #expect(domain.lockOrder!.violations.count == 0, "a trylock cannot wait")
        Self.onThread(domain, "third") { b.withLock { a.withLock {} } }
        let found = domain.lockOrder!.violations.snapshot
        try #require(found.count == 1, "\(found)")
        #expect(Set(found[0].classes) == ["class a", "class b"])
        #expect(found[0].thisThread.joined().contains("'third'") && found[0].earlier.joined().contains("'first'"), "\(found[0])")
        #expect(found[0].description.hasPrefix("possible lock inversion: 'class b' -> 'class a' -> 'class b'"), "\(found[0])")
        Self.onThread(domain, "fourth") { b.withLock { a.withLock {} } }
        #expect(domain.lockOrder!.violations.count == 1, "reported once")
    }

    @Test func consistentOrdersAndOneClassNestedAreClean() {
        let domain = SyncDomain(lockOrder: true)
        let outer = SleepingRWLock("outer", domain: domain, orderClass: "outer")
        let inner = [SpinLock("inner 1", domain: domain, orderClass: "inner"), SpinLock("inner 2", domain: domain, orderClass: "inner")]
        for round in 0..<4 {
            Self.onThread(domain, "round \(round)") {
                outer.withShared { inner[round % 2].withLock { inner[1 - round % 2].withLock {} } }
                outer.withExclusive { inner[0].withLock {} }
            }
        }
        #expect(domain.lockOrder!.violations.count == 0, "\(domain.lockOrder!.violations.snapshot)")
    }

    @Test func aLockTakenInReclaimAndHeldAroundAnAllocationIsAnInversionWithReclaim() throws {
        let domain = SyncDomain(lockOrder: true)
        let device = SleepingLock("device", domain: domain, orderClass: "device")
        // A [reclaim] callback takes the device lock...
        Self.onThread(domain, "kswapd") { domain.withReclaim { device.withLock {} } }
        // ...and an allocation in reclaim context never reclaims: no edge from it.
        Self.onThread(domain, "reserve") { domain.withReclaim { device.withLock { domain.mightReclaim() } } }
        #expect(domain.lockOrder!.violations.count == 0)
        // A device thread holds it around an allocation that may reclaim.
        Self.onThread(domain, "device") { device.withLock { domain.mightReclaim() } }
        let found = domain.lockOrder!.violations.snapshot
        try #require(found.count == 1, "\(found)")
        #expect(found[0].involvesReclaim && Set(found[0].classes) == ["device", "reclaim"], "\(found[0])")
        #expect(found[0].description.contains("a lock taken in reclaim is also held around an allocation that may reclaim"))
    }

    @Test func threeLocksInACycleAreOneReport() throws {
        let domain = SyncDomain(lockOrder: true)
        let locks = ["x", "y", "z"].map { SleepingLock($0, domain: domain, orderClass: $0) }
        Self.onThread(domain, "xy") { locks[0].withLock { locks[1].withLock {} } }
        Self.onThread(domain, "yz") { locks[1].withLock { locks[2].withLock {} } }
        #expect(domain.lockOrder!.violations.count == 0)
        Self.onThread(domain, "zx") { locks[2].withLock { locks[0].withLock {} } }
        let found = domain.lockOrder!.violations.snapshot
        try #require(found.count == 1, "\(found)")
        #expect(found[0].classes == ["z", "x", "y"], "\(found[0])")
        #expect(found[0].earlier.count == 2, "the earlier chain has both edges: \(found[0].earlier)")
    }

    @Test func withoutValidationThereIsNoValidatorAndLocksWork() {
        let domain = SyncDomain()
        #expect(domain.lockOrder == nil)
        let a = SpinLock("a", domain: domain, orderClass: "a")
        let b = SleepingLock("b", domain: domain, orderClass: "b")
        a.withLock { #expect(a.isHeldByCurrentThread) }
        b.withLock { #expect(b.isHeldByCurrentThread) }
        #expect(!a.isHeldByCurrentThread && !b.isHeldByCurrentThread)
    }

    @Test func locksKnowTheirHolder() {
        let domain = SyncDomain()
        let spin = SpinLock("spin", domain: domain)
        let mutex = SleepingLock("mutex", domain: domain)
        spin.lock()
        mutex.lock()
        Self.onThread(domain, "other") {
            #expect(!spin.isHeldByCurrentThread && spin.isLocked)
            #expect(!mutex.isHeldByCurrentThread && mutex.isLocked)
        }
        #expect(spin.isHeldByCurrentThread && mutex.isHeldByCurrentThread)
        mutex.unlock()
        spin.unlock()
    }

    @Test func heldLocksAreCountedPerThread() {
        let domain = SyncDomain(lockOrder: true)
        let validator = domain.lockOrder!
        let a = SleepingLock("a", domain: domain, orderClass: "a")
        #expect(validator.heldByCurrentThread == 0)
        a.lock()
        #expect(validator.heldByCurrentThread == 1)
        #expect(validator.describeHeldByCurrentThread().first?.hasPrefix("'a' taken at LabSyncTests/LockOrderTests.swift:") == true)
        Self.onThread(domain, "other") { #expect(validator.heldByCurrentThread == 0) }
        a.unlock()
        #expect(validator.heldByCurrentThread == 0)
    }
}
