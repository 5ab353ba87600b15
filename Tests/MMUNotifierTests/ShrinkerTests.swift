import LabSync
import MMUNotifier
import Synchronization
import Testing

final class CacheShrinker: Shrinker, @unchecked Sendable {
    let shrinkerName: String
    let objects = Atomic<Int>(0)
    let lock: SleepingLock
    let asked = Mutex<[ShrinkControl]>([])
    let sleepsInScan: Bool

    init(_ name: String, objects: Int, sync: SyncDomain, sleepsInScan: Bool = false) {
        shrinkerName = name
        self.objects.store(objects, ordering: .relaxed)
        lock = SleepingLock(name, domain: sync)
        self.sleepsInScan = sleepsInScan
    }

    func count(_ control: ShrinkControl) -> Int { objects.load(ordering: .relaxed) }

    func scan(_ control: ShrinkControl) -> ShrinkScanResult {
        asked.withLock { $0.append(control) }
        if sleepsInScan {
            lock.withLock {}  // a sleeping lock, even in a non-blockable scan: a bug
        } else if !control.canBlock {
            // Fast-fail: never wait for the device lock on this path
            // (docs/CONTRACT.md, rule 18).
            guard lock.tryLock() else { return .stop }
            lock.unlock()
        } else {
            lock.withLock {}
        }
        let freed = min(control.objectsToScan, objects.load(ordering: .relaxed))
        objects.subtract(freed, ordering: .relaxed)
        return .freed(freed)
    }
}

@Suite("Shrinkers")
struct ShrinkerTests {
    @Test func shrinkersAreAskedInProportionToReclaimPressureInBatches() {
        let sync = SyncDomain()
        let registry = ShrinkerRegistry(sync: sync)
        let big = CacheShrinker("big", objects: 10_000, sync: sync)
        let small = CacheShrinker("small", objects: 100, sync: sync)
        registry.register(big)
        registry.register(small)
        let report = registry.shrink(scanned: 250, eligible: 1_000, canBlock: true)
        #expect(report.freed == 2_500 + 25)
        #expect(big.objects.load(ordering: .relaxed) == 7_500)
        #expect(small.objects.load(ordering: .relaxed) == 75)
        #expect(big.asked.withLock { $0 }.allSatisfy { $0.objectsToScan <= ShrinkerRegistry.batchSize })
        #expect(report.stopped.isEmpty)
    }

    @Test func aNonBlockableScanFastFailsWhenTheDeviceLockIsBusy() {
        let sync = SyncDomain()
        let registry = ShrinkerRegistry(sync: sync)
        let gpu = CacheShrinker("gpu", objects: 1_000, sync: sync)
        registry.register(gpu)
        gpu.lock.lock()
        let report = registry.shrink(scanned: 1, eligible: 1, canBlock: false)
        gpu.lock.unlock()
        #expect(report.stopped == ["gpu"])
        #expect(report.freed == 0)
        #expect(gpu.asked.withLock { $0.count } == 1, "stop ends this shrinker's round")
        #expect(sync.contextViolations.count == 0)
    }

    @Test func aShrinkerThatSleepsInANonBlockableScanIsCaught() throws {
        let sync = SyncDomain()
        let registry = ShrinkerRegistry(sync: sync)
        registry.register(CacheShrinker("sleepy", objects: 10, sync: sync, sleepsInScan: true))
        _ = registry.shrink(scanned: 1, eligible: 1, canBlock: false)
        let violation = try #require(sync.contextViolations.snapshot.first)
        #expect(violation.context.reason == "non-blockable shrink")
        #expect(violation.context.subject == "sleepy")
        #expect(violation.operation == .sleepingLockAcquire)

        let blockable = SyncDomain()
        let fine = ShrinkerRegistry(sync: blockable)
        fine.register(CacheShrinker("sleepy", objects: 10, sync: blockable, sleepsInScan: true))
        _ = fine.shrink(scanned: 1, eligible: 1, canBlock: true)
        #expect(blockable.contextViolations.count == 0, "sleeping is fine when the caller can block")
    }

    @Test func unregisterWaitsForARunningScan() {
        let sync = SyncDomain()
        let registry = ShrinkerRegistry(sync: sync)
        let gpu = CacheShrinker("gpu", objects: 1_000, sync: sync)
        registry.register(gpu)
        gpu.lock.lock()  // the scan will block inside
        let scanning = sync.spawnThread(named: "kswapd") { _ = registry.shrink(scanned: 1, eligible: 10, canBlock: true) }
        let unregistered = Atomic<Bool>(false)
        let remover = sync.spawnThread(named: "remover") {
            sync.sleep(for: .milliseconds(5))
            registry.unregister(gpu)
            unregistered.store(true, ordering: .sequentiallyConsistent)
        }
        sync.sleep(for: .milliseconds(30))
        let early = unregistered.load(ordering: .sequentiallyConsistent)
        #expect(!early, "unregister must wait for the scan in progress")
        gpu.lock.unlock()
        scanning.join()
        remover.join()
        #expect(registry.registered.isEmpty)
        #expect(gpu.objects.load(ordering: .relaxed) == 900)
    }
}
