import LabSync
import MMUNotifier
import Synchronization
import Testing
@testable import VirtualMemory

@Suite("Physical memory")
struct PhysicalMemoryTests {
    @Test func metadataFitsTheBudget() {
        #expect(PhysicalMemory.metadataBytesPerFrame <= 32)
    }

    @Test func allocateFreeBumpsTheGenerationAndZeroesThePayload() throws {
        let memory = PhysicalMemory(.init(frames: 64, payloadSize: 16, minFree: 0, lowFree: 0, highFree: 1), sync: SyncDomain())
        let frame = try #require(memory.allocate())
        #expect(memory.refcount(of: frame) == 1)
        #expect(memory.flags(of: frame).contains(.allocated))
        let generation = memory.generation(of: frame)
        memory.payload(of: frame).storeBytes(of: 0xDEAD_BEEF as UInt32, as: UInt32.self)
        #expect(memory.put(frame))
        #expect(memory.generation(of: frame) == generation + 1)
        #expect(memory.flags(of: frame) == [])
        let again = try #require(memory.allocate())
        #expect(again == frame, "the free list is LIFO")
        #expect(memory.payload(of: again).allSatisfy { $0 == 0 })
        memory.put(again)
        #expect(memory.freeFrames == 64)
    }

    @Test func theMinWatermarkIsAReserveOnlyReclaimMayUse() {
        let memory = PhysicalMemory(.init(frames: 32, payloadSize: 8, minFree: 8, lowFree: 8, highFree: 16), sync: SyncDomain())
        var taken: [Int32] = []
        while let frame = memory.allocate() { taken.append(frame) }
        #expect(taken.count == 24, "outside reclaim, a node keeps its min watermark")
        ExecutionContext.current.withReclaimContext {
            while let frame = memory.allocate() { taken.append(frame) }
        }
        #expect(taken.count == 32, "reclaim context (PF_MEMALLOC) may take the reserve")
        for frame in taken { memory.put(frame) }
    }

    @Test func nodesFallBackAndReportTheirFrames() throws {
        let memory = PhysicalMemory(.init(frames: 40, nodes: 2, payloadSize: 8, minFree: 0, lowFree: 0, highFree: 1), sync: SyncDomain())
        let first = try #require(memory.allocate(preferring: 1))
        #expect(memory.node(of: first).id == 1)
        var taken = [first]
        while let frame = memory.allocate(preferring: 1) { taken.append(frame) }
        #expect(taken.count == 40, "node 1 fell back to node 0 when it ran out")
        #expect(Set(taken.map { memory.node(of: $0).id }) == [0, 1])
        for frame in taken { memory.put(frame) }
    }

    @Test func frameLockExcludesAndWakesWaiters() throws {
        let sync = SyncDomain()
        let memory = PhysicalMemory(.init(frames: 8, payloadSize: 8, minFree: 0, lowFree: 0, highFree: 1), sync: sync)
        let frame = try #require(memory.allocate())
        #expect(memory.tryLock(frame))
        #expect(!memory.tryLock(frame))
        let acquired = Atomic<Bool>(false)
        let waiter = sync.spawnThread(named: "waiter") {
            memory.lock(frame)
            acquired.store(true, ordering: .sequentiallyConsistent)
            memory.unlock(frame)
        }
        sync.sleep(for: .milliseconds(10))
        let early = acquired.load(ordering: .sequentiallyConsistent)
        #expect(!early)
        memory.unlock(frame)
        waiter.join()
        let late = acquired.load(ordering: .sequentiallyConsistent)
        #expect(late)
        memory.put(frame)
    }

    @Test func badConfigurationsAreDescribed() {
        #expect(PhysicalMemory.Configuration(frames: 0).problem != nil)
        #expect(PhysicalMemory.Configuration(frames: 64, payloadSize: 4).problem != nil)
        #expect(PhysicalMemory.Configuration(frames: 64, nodes: 100).problem != nil)
        #expect(PhysicalMemory.Configuration(frames: 64, minFree: 10, lowFree: 5, highFree: 20).problem != nil)
        #expect(PhysicalMemory.Configuration(frames: 64).problem == nil)
    }
}
