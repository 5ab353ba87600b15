import LabSync
import MMUNotifier
import Synchronization
import Testing
@testable import VirtualMemory

/// A frame is never freed while someone holds its lock (Linux checks
/// PG_locked among the flags of a page being freed): the holder's unlock
/// would otherwise clear the lock of the frame's next owner. A fault that
/// maps a fresh page it holds locked keeps a reference of its own until it
/// has unlocked it, so an unmap or a second copy-on-write of the page while
/// the fault's end callbacks still run cannot free it. (A uffd-snapshot
/// campaign found the copy-on-write case: the CPU copied a page a NIC's
/// fault had just copied and still held locked, made read-only again by a
/// write-protect, and freed it.)
@Suite("Frame locks and frees")
struct FrameLockTests {
    @Test("a copy-on-write's new page, unmapped while the fault's end callbacks run, lives until the fault has unlocked it")
    func aCopyUnmappedDuringTheEndCallbacksOutlivesTheLock() throws {
        let machine = makeMachine()
        let space = machine.makeAddressSpace()
        let base = try space.map(length: page, kind: .anonymousPrivate)
        _ = try space.read(base)  // maps the zero page read-only: the write below copies it
        let probe = ProbeDevice(machine, space)
        try space.notifiers.register(probe)
        let inEnd = Atomic<Bool>(false)
        let goOn = Atomic<Bool>(false)
        probe.onEnd.withLock {
            $0 = { range in
                guard range.event == .cowBreak else { return }
                inEnd.store(true, ordering: .releasing)
                // Bounded (10 s): the test goes on once the page is unmapped.
                for _ in 0..<20_000 where !goOn.load(ordering: .acquiring) { machine.sync.sleep(for: .microseconds(500)) }
            }
        }
        let writer = machine.sync.spawnThread(named: "writer") { _ = try? space.write(base, [7]) }
        for _ in 0..<20_000 where !inEnd.load(ordering: .acquiring) { machine.sync.sleep(for: .microseconds(500)) }
        let reachedEnd = inEnd.load(ordering: .acquiring)
        #expect(reachedEnd, "the write's copy-on-write never reached its end callbacks")
        let copy = space.translate(base).frame
        #expect(machine.memory.flags(of: copy).contains(.locked), "the fault still holds its new page locked")

        // The page goes while the fault still holds it: the mapping's reference is dropped.
        try space.adviseDontNeed(start: base, length: page)
        #expect(machine.memory.flags(of: copy).contains(.allocated), "the fault's new page was freed while it held it locked")
        goOn.store(true, ordering: .releasing)
        writer.join()

        // The write faulted a fresh page in and landed; the copy is gone.
        #expect(try space.read(base).first == 7)
        #expect(machine.memory.allocatedFrames().count == 1, "\(machine.memory.allocatedFrames())")
    }
}
