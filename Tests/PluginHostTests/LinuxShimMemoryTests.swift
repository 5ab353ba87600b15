import LabSync
import PluginHost
import Testing
import TestSupport
import VirtualMemory

/// The Linux shim's memory side, one function at a time, through its probe
/// (kernel-style code in Tests/Fixtures/Plugins/LinuxShim): the interval
/// notifier and its sequence, hmm_range_fault, page handles and kmap as
/// checked DMA, pinning, mm_struct lifetime, whole-space notifiers, and
/// allocation in reclaim context.
@Suite("Linux shim: notifiers, hmm_range_fault, pages")
struct LinuxShimMemoryTests {
    @Test func hmmRangeFaultIsBusyWhenAnInvalidationRacedAndTheSequenceSaysSo() throws {
        let probe = try ShimProbe()
        let page0 = probe.address(0)
        try probe.space.write(page0, payload(0, 1))

        // An invalidation between read_begin and hmm_range_fault: -EBUSY.
        let seq = UInt64(try probe.run(.readBegin).result)
        #expect(try probe.run(.readRetry, [seq]).result == 0, "nothing raced yet")
        try probe.space.adviseDontNeed(start: page0, length: 4096)
        #expect(try probe.run(.hmmFault, [page0, 0, seq, 0]).result == ShimProbe.EBUSY)
        #expect(try probe.run(.readRetry, [seq]).result == 1, "mmu_interval_read_retry sees the moved sequence")
        // The interval heard it as Linux's MMU_NOTIFY_CLEAR (madvise DONTNEED), blockable, on that page.
        let state = try probe.run(.intervalState)
        #expect(state.result == 1)
        #expect(state.arguments == [ShimProbe.Event.clear.rawValue, 1, page0, page0 + 4096], "\(state.arguments)")

        // Begun again, nothing racing: the page, writable as the primary maps it.
        let fresh = UInt64(try probe.run(.readBegin).result)
        let fault = try probe.run(.hmmFault, [page0, 1, fresh, 0])
        #expect(fault.result == 0 && fault.arguments[1] == 1, "\(fault)")
        let frame = UInt64(probe.space.translate(page0).frame)
        #expect(fault.arguments[2] == frame << 12 && fault.arguments[3] == 0, "hmm_pfn_to_phys, hmm_pfn_to_map_order (4 KiB): \(fault)")
        #expect(try probe.run(.readRetry, [fresh]).result == 0)
        #expect(try probe.run(.pageToPFN, [0]).result == Int64(probe.space.translate(page0).frame), "page_to_pfn is the frame")

        // Not mapped with the permission asked, or not mapped: -EFAULT.
        try probe.space.protect(start: probe.address(1), length: 4096, .read)
        let now = UInt64(try probe.run(.readBegin).result)
        #expect(try probe.run(.hmmFault, [probe.address(1), 1, now, 1]).result == ShimProbe.EFAULT)
        #expect(try probe.run(.hmmFault, [probe.address(probe.pages), 0, now, 1]).result == ShimProbe.EFAULT)
        #expect(probe.reports.isEmpty, "\(probe.reports)")
        probe.instance.destroy()
    }

    @Test(arguments: [("munmap", ShimProbe.Event.unmap), ("mprotect", .protectionVMA), ("pageout", .clear)])
    func invalidationsArriveWithLinuxsEventNames(what: String, event: ShimProbe.Event) throws {
        let probe = try ShimProbe()
        let page = probe.address(3)
        try probe.space.populate(start: page, length: 4096, write: true)
        switch what {
        case "munmap": try probe.space.unmap(start: page, length: 4096)
        case "mprotect": try probe.space.protect(start: page, length: 4096, .read)
        default: #expect(try probe.machine.pageOut(probe.space, start: page, length: 4096) == 1)
        }
        let state = try probe.run(.intervalState)
        #expect(state.result >= 1 && state.arguments[0] == event.rawValue, "\(what): \(state)")
        probe.instance.destroy()
    }

    @Test func kmapReadsAndWritesAreTheLabsCheckedDMA() throws {
        let probe = try ShimProbe()
        let (page0, page1) = (probe.address(0), probe.address(1))
        try probe.space.write(page0, payload(0, 7))

        // Reads what the CPU wrote, through kmap and kmap_local_page.
        #expect(try probe.run(.hmmFault, [page0, 0, UInt64(try probe.run(.readBegin).result), 0]).result == 0)
        #expect(try probe.run(.kmapRead, [0, 0]).bytes == payload(0, 7))
        #expect(try probe.run(.kmapRead, [0, 1]).bytes == payload(0, 7))

        // A write through a page faulted for writing reaches the page: the CPU sees it.
        try probe.space.write(page1, payload(1, 1))
        #expect(try probe.run(.hmmFault, [page1, 1, UInt64(try probe.run(.readBegin).result), 1]).result == 0)
        try probe.run(.kmapWrite, [1, 1], bytes: payload(1, 2))
        #expect(try probe.run(.setDirty, [1]).result == 1)
        #expect(try probe.space.read(page1) == payload(1, 2))
        #expect(probe.machine.violations.count == 0, "\(probe.machine.violations.snapshot)")

        // The probe keeps page 0 past its invalidation: reclaim frees the
        // frame, and kmap of the stale page is found at the access.
        #expect(try probe.machine.pageOut(probe.space, start: page0, length: 4096) == 1)
        try probe.run(.kmapRead, [0, 1])
        let found = probe.violations(at: page0)
        #expect(found.contains(.useAfterFree) || found.contains(.staleTranslation), "\(found)")
        probe.instance.destroy()
    }

    @Test func aWriteThroughAPageGivenReadOnlyIsFoundAtKunmap() throws {
        let probe = try ShimProbe()
        let page = probe.address(2)
        try probe.space.write(page, payload(2, 1))
        try probe.space.protect(start: page, length: 4096, .read)
        let fault = try probe.run(.hmmFault, [page, 0, UInt64(try probe.run(.readBegin).result), 0])
        #expect(fault.result == 0 && fault.arguments[1] == 0, "no HMM_PFN_WRITE on a read-only page: \(fault)")
        try probe.run(.kmapRead, [0, 0])
        #expect(probe.violations(at: page).isEmpty, "a read is fine")
        try probe.run(.kmapWrite, [0, 0], bytes: payload(2, 9))
        #expect(probe.violations(at: page).contains(.writeThroughReadOnly), "\(probe.violations(at: page))")
        probe.instance.destroy()
    }

    @Test func pinnedPagesStayUntilUnpinnedAndTheirWritesAreKept() throws {
        let probe = try ShimProbe()
        let page = probe.address(4)
        try probe.space.write(page, payload(4, 1))
        #expect(try probe.run(.pin, [page, 2, 1]).result == 2)
        #expect(probe.machine.memory.allocatedFrames().filter { $0.pins == 1 }.count == 2)
        // A pinned page is kmapped through its pin, even after reclaim unmapped it.
        _ = try probe.machine.pageOut(probe.space, start: page, length: 2 * 4096)
        try probe.run(.kmapWrite, [7, 1], bytes: payload(4, 2))
        try probe.run(.unpin, [1])
        #expect(probe.machine.memory.allocatedFrames().allSatisfy { $0.pins == 0 }, "no pin left")
        #expect(try probe.space.read(page) == payload(4, 2), "the write made through the pin is what the CPU reads")
        #expect(probe.machine.violations.count == 0, "\(probe.machine.violations.snapshot)")
        probe.instance.destroy()
    }

    @Test func mmgetNotZeroFailsOnceTheAddressSpaceHasExited() throws {
        let probe = try ShimProbe()
        #expect(try probe.run(.mmget).result == 1)
        probe.space.exit()
        #expect(try probe.run(.mmget).result == 0)
        #expect(probe.reports.isEmpty, "\(probe.reports)")
        probe.instance.destroy()
    }

    /// probe.h's PROBE_NOTIFIER steps.
    enum NotifierStep: UInt64 { case register = 1, state, unregister, get, put, hooks, registerLocked, getLocked, getSaturated }

    @Test func aWholeSpaceNotifierHearsStartsEndsAndOneRelease() throws {
        let probe = try ShimProbe()
        let shimOwn = probe.instance.subscribers.count
        try probe.run(.notifier, [NotifierStep.register.rawValue])
        #expect(probe.instance.subscribers.count == shimOwn + 1)
        try probe.space.populate(start: probe.address(0), length: 8 * 4096, write: true)
        try probe.space.unmap(start: probe.address(0), length: 4096)
        var state = try probe.run(.notifier, [NotifierStep.state.rawValue])
        #expect(state.result == Int64(ShimProbe.Event.unmap.rawValue) && state.arguments[0] >= 1, "\(state)")
        try probe.space.protect(start: probe.address(1), length: 4096, .read)
        state = try probe.run(.notifier, [NotifierStep.state.rawValue])
        #expect(state.result == Int64(ShimProbe.Event.protectionVMA.rawValue), "\(state)")
        #expect(state.arguments[0] == state.arguments[1], "every start has its end: \(state)")
        // mmu_notifier_unregister before the exit calls release itself, once.
        let unregistered = try probe.run(.notifier, [NotifierStep.unregister.rawValue])
        #expect(unregistered.arguments[2] == 1)
        #expect(probe.instance.subscribers.count == shimOwn)

        // Registered again: the exit calls release, and unregister does not call it twice.
        try probe.run(.notifier, [NotifierStep.register.rawValue])
        probe.space.exit()
        #expect(try probe.run(.notifier, [NotifierStep.state.rawValue]).arguments[2] == 1)
        #expect(try probe.run(.notifier, [NotifierStep.unregister.rawValue]).arguments[2] == 1)
        #expect(probe.machine.notifierCore.contractViolations.count == 0)
        probe.instance.destroy()
    }

    /// Reclaim's aging and the primary's TLB flushes reach the driver's
    /// clear_flush_young, test_young and arch_invalidate_secondary_tlbs,
    /// and their answers come back.
    @Test func agingAndSecondaryTLBFlushesReachTheDriversOps() throws {
        let probe = try ShimProbe()
        try probe.run(.notifier, [NotifierStep.register.rawValue])
        try probe.space.populate(start: probe.address(0), length: 4 * 4096, write: true)
        #expect(probe.space.notifiers.clearYoung(start: probe.address(0), end: probe.address(1)), "the probe says young")
        #expect(probe.space.notifiers.testYoung(address: probe.address(0)))
        try probe.space.unmap(start: probe.address(0), length: 4 * 4096)
        let hooks = try probe.run(.notifier, [NotifierStep.hooks.rawValue])
        #expect(hooks.arguments[0] == 1 && hooks.arguments[1] == 1, "one clear_flush_young, one test_young: \(hooks.arguments)")
        #expect(hooks.arguments[2] >= 1, "the unmap's TLB flush reached arch_invalidate_secondary_tlbs: \(hooks.arguments)")
        try probe.run(.notifier, [NotifierStep.unregister.rawValue])
        probe.instance.destroy()
    }

    @Test func mmuNotifierGetSharesOneNotifierAndTheLastPutFreesIt() throws {
        let probe = try ShimProbe()
        let shimOwn = probe.instance.subscribers.count
        let first = try probe.run(.notifier, [NotifierStep.get.rawValue])
        let second = try probe.run(.notifier, [NotifierStep.get.rawValue])
        #expect(first.result == 1 && first.arguments[0] == 1)
        #expect(second.result == 1 && second.arguments[0] == 2, "the same notifier, two users: \(second)")
        #expect(probe.instance.subscribers.count == shimOwn + 1)
        #expect(try probe.run(.notifier, [NotifierStep.put.rawValue]).result == 0, "one user left: not freed")
        #expect(try probe.run(.notifier, [NotifierStep.put.rawValue]).result == 1, "the last put frees it (free_notifier)")
        #expect(probe.instance.subscribers.count == shimOwn)
        probe.instance.destroy()
    }

    /// In reclaim context an allocation draws on the host's bounded reserve
    /// and fails, not blocks, when it is spent; kfree gives it back.
    @Test func allocationsInReclaimContextComeFromTheBoundedReserve() throws {
        let probe = try ShimProbe(pages: 64, frames: 160)
        try probe.space.populate(start: probe.base, length: 64 * 4096, write: true)
        try probe.run(.reclaimAlloc, [1])
        // CPU pressure elsewhere: direct reclaim evicts the probe's pages,
        // and its invalidate allocates (GFP_ATOMIC) from inside reclaim.
        let ballast = try probe.space.map(length: 300 * 4096, kind: .anonymousPrivate)
        for page in 0..<300 { try probe.space.write(ballast + UInt64(page) * 4096, [1]) }
        let armed = try probe.run(.reclaimAlloc, [0])
        #expect(armed.arguments[0] > 0, "some failed once the reserve was spent (outside reclaim none would): \(armed)")
        // Each kept 4 KiB allocation holds one frame of the reserve, so the
        // reserve is what could be kept.
        #expect(armed.result == Int64(probe.machine.configuration.devicePageTableReserve), "allocations kept: \(armed.result)")
        #expect(probe.reports.isEmpty, "\(probe.reports)")
        probe.instance.destroy()
        probe.space.exit()
        probe.machine.dropCaches()
        #expect(probe.machine.memory.freeFrames == 160, "kfree gave the charged frames back: \(probe.machine.memory.allocatedFrames().prefix(4))")
    }
}
