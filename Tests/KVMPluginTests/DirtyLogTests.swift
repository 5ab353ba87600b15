import LabSync
import PluginHost
import Synchronization
import Testing
import TestSupport
import VirtualMemory

/// Dirty logging as live migration uses it: copy guest memory while vCPUs
/// write, then copy again what the log says was written, until the guest
/// stops; the copy must equal the memory.
@Suite("KVM plugin: dirty logging")
struct DirtyLogTests {
    @Test func theLogNamesWhatTheGuestWrote() throws {
        let f = try KVMFixture()
        let (_, slot) = try f.memslot(pages: 100)
        for i in 0..<100 { try f.guestWrite(slot, guestBase + UInt64(i) * page, tag(i, 1)) }
        try f.command(slot, .enableDirtyLog)
        #expect(try f.dirtyPages(slot, pages: 100) == [], "nothing written since logging began")
        for i in [3, 64, 99] { try f.guestWrite(slot, guestBase + UInt64(i) * page, tag(i, 2)) }
        _ = try f.guestRead(slot, guestBase + 10 * page)
        #expect(try f.dirtyPages(slot, pages: 100) == [3, 64, 99])
        #expect(try f.dirtyPages(slot, pages: 100) == [], "a get clears the log")
        try f.guestWrite(slot, guestBase + 64 * page, tag(64, 3))
        #expect(try f.dirtyPages(slot, pages: 100) == [64], "the get write-protected the page again: the next write is logged")
        #expect(f.stat("dirty log faults") == 4)
        try f.command(slot, .disableDirtyLog)
        #expect { _ = try f.dirtyPages(slot, pages: 100) } throws: { "\($0)".contains("dirty logging is off") }
        #expect(f.finish() == [])
    }

    @Test func aLiveCopyWhileVCPUsWriteEqualsTheMemory() throws {
        let f = try KVMFixture(frames: 512)
        let pages = 128
        let (hva, slot) = try f.memslot(pages: pages)
        for i in 0..<pages { try f.guestWrite(slot, guestBase + UInt64(i) * page, tag(i, 0)) }
        try f.command(slot, .enableDirtyLog)
        // The first pass copies everything, while the guest already writes.
        let stop = Atomic<Bool>(false)
        let problems = Problems(sync: f.machine.sync)
        let writes = Atomic<Int>(0)
        var vcpus: [any ThreadHandle] = []
        for owner in 0..<2 {
            vcpus.append(f.machine.sync.spawnThread(named: "vcpu-\(owner)") {
                var rng = SplitMix64(seed: testSeed &+ UInt64(owner))
                var versions = [UInt32](repeating: 0, count: pages)
                while !stop.load(ordering: .relaxed) {
                    let i = Int(rng.next() % UInt64(pages / 2)) * 2 + owner
                    versions[i] += 1
                    do {
                        try f.guestWrite(slot, guestBase + UInt64(i) * page, tag(i, versions[i]))
                        writes.add(1, ordering: .relaxed)
                    } catch {
                        problems.note("vcpu \(owner) page \(i): \(error)")
                    }
                }
            })
        }
        var copy = try (0..<pages).map { try f.space.read(hva + UInt64($0) * page) }
        var rounds = 0
        while rounds < 20 * stressScale || writes.load(ordering: .relaxed) < 2_000 {
            rounds += 1
            for i in try f.dirtyPages(slot, pages: pages) { copy[i] = try f.space.read(hva + UInt64(i) * page) }
            if rounds > 100_000 { break }
        }
        stop.store(true, ordering: .relaxed)
        for vcpu in vcpus { vcpu.join() }
        // The guest is paused: the last round.
        let last = try f.dirtyPages(slot, pages: pages)
        for i in last { copy[i] = try f.space.read(hva + UInt64(i) * page) }
        for i in 0..<pages {
            let memory = try f.space.read(hva + UInt64(i) * page)
            if copy[i] != memory { problems.note("page \(i): copied \(copy[i]), memory holds \(memory)") }
        }
        #expect(problems.all == [], "seed \(testSeed)")
        #expect(f.stat("dirty pages reported") > 0 && f.stat("dirty log faults") > 0)
        print("KVM live copy: \(writes.load(ordering: .relaxed)) guest writes over \(rounds) rounds; "
            + "\(f.stat("dirty pages reported")) pages reported dirty, \(f.stat("flush waits")) flush waits")
        #expect(f.finish() == [], "seed \(testSeed)")
    }
}
