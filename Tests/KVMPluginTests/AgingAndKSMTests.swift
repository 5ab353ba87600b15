import LabSync
import PluginHost
import Testing
import VirtualMemory

/// Aging (clear_young: never evict a page the device uses hot;
/// docs/CONTRACT.md, rule 12) and change_pte for KSM (rule 13), each
/// measured against the same workload without the mechanism.
@Suite("KVM plugin: aging and change_pte")
struct AgingAndKSMTests {
    /// The guest writes 160 pages once, then keeps reading the first 16
    /// while reclaim runs between its passes. Returns the refaults of the
    /// hot pages (reclaim took them) and how many cold pages went.
    func agingRun(faults: MemoryFaultInjection) throws -> (hotRefaults: UInt64, coldEvicted: Int, youngAnswers: UInt64, problems: [String]) {
        let f = try KVMFixture(frames: 256, faults: faults)
        let pages = 160
        let hot = 16
        let (hva, slot) = try f.memslot(pages: pages)
        for i in 0..<pages { try f.guestWrite(slot, guestBase + UInt64(i) * page, tag(i, 1)) }
        let violationsBefore = f.stat("ept violations")
        for _ in 0..<8 {
            for i in 0..<hot { #expect(try f.guestRead(slot, guestBase + UInt64(i) * page) == tag(i, 1)) }
            ExecutionContext.current.withReclaimContext { _ = f.machine.shrink(f.machine.memory.nodes[0], target: 32) }
        }
        let hotRefaults = f.stat("ept violations") - violationsBefore
        let coldEvicted = (hot..<pages).filter { !f.space.translate(hva + UInt64($0) * page).isPresent }.count
        for i in 0..<pages { #expect(try f.guestRead(slot, guestBase + UInt64(i) * page) == tag(i, 1), "page \(i) lost its data") }
        return (hotRefaults, coldEvicted, f.stat("young answers"), f.finish())
    }

    @Test func guestHotPagesSurviveReclaimWhileColdOnesGo() throws {
        let aged = try agingRun(faults: [])
        #expect(aged.problems == [])
        #expect(aged.hotRefaults == 0, "reclaim took a page the guest kept using: clear_young was not heard")
        #expect(aged.coldEvicted >= 64, "reclaim should take the cold pages: \(aged.coldEvicted) went")
        #expect(aged.youngAnswers > 0)
        // The same run with reclaim deaf to the secondary's accessed bits:
        // the guest's hot pages go too and fault back (the check can fail).
        let deaf = try agingRun(faults: .skipYoungCheck)
        #expect(deaf.problems == [])
        #expect(deaf.hotRefaults > 0, "without the young check the hot pages should have been reclaimed")
        print("KVM aging: hot refaults \(aged.hotRefaults) with clear_young, \(deaf.hotRefaults) without; cold pages evicted \(aged.coldEvicted)")
    }

    /// The guest writes 32 pages in 8 groups of 4 identical ones and reads
    /// them; KSM merges them; the guest reads them again. Returns pages
    /// merged, the EPT violations of the second read, and the counters.
    func ksmRun(changePTE: Bool) throws -> (merged: Int, violations: UInt64, saved: UInt64, refaults: UInt64, problems: [String]) {
        let f = try KVMFixture(options: "change-pte=\(changePTE ? 1 : 0)")
        let pages = 32
        let (_, slot) = try f.memslot(pages: pages, mergeable: true)
        for i in 0..<pages { try f.guestWrite(slot, guestBase + UInt64(i) * page, tag(i % 8, 1)) }
        for i in 0..<pages { _ = try f.guestRead(slot, guestBase + UInt64(i) * page) }
        var merged = 0
        for _ in 0..<3 { merged += f.machine.samePageMerger.scan() }
        let before = f.stat("ept violations")
        for i in 0..<pages { #expect(try f.guestRead(slot, guestBase + UInt64(i) * page) == tag(i % 8, 1)) }
        let violations = f.stat("ept violations") - before
        // A write breaks the sharing (cowBreak) for that page alone.
        try f.guestWrite(slot, guestBase + 5 * page, tag(99, 2))
        #expect(try f.guestRead(slot, guestBase + 5 * page) == tag(99, 2))
        #expect(try f.guestRead(slot, guestBase + 13 * page) == tag(5, 1), "the other pages of the group keep the merged content")
        try f.command(slot, .verify)
        return (merged, violations, f.stat("refaults saved"), f.stat("ksm refaults"), f.finish())
    }

    @Test func changePTESavesTheRefaultsOfAKSMMerge() throws {
        let with = try ksmRun(changePTE: true)
        let without = try ksmRun(changePTE: false)
        #expect(with.problems == [] && without.problems == [])
        #expect(with.merged == 32 && without.merged == 32, "KSM merged \(with.merged) / \(without.merged) of 32 pages")
        #expect(with.violations == 0, "with change_pte the entries followed the merge: no refault")
        #expect(with.saved == 32 && with.refaults == 0)
        #expect(without.violations == 32 && without.refaults == 32, "without it every merged page faulted back")
        #expect(without.saved == 0)
        print("KVM change_pte: \(with.saved) refaults saved; without change_pte \(without.refaults) refaults after the merge")
    }
}
