import LabSync
import PluginHost
import Testing
import TestSupport
import VirtualMemory

/// The Linux shim's page references (get_page, put_page, folio_get,
/// folio_put): on a page the driver holds pinned, a reference keeps the
/// frame (and the page good to kmap) past unpin_user_page until the last
/// put_page; on a page nothing holds, it is a reference on the frame (the
/// host's page_get, ABI 1.6) that keeps it past its unmapping and from
/// reclaim.
@Suite("Linux shim: get_page and put_page")
struct LinuxShimReferenceTests {
    typealias PageOp = LinuxShimPageTests.PageOp

    /// The pattern of a driver handing a pinned page to a second user:
    /// get_page, unpin_user_page, and the page stays (even once the process
    /// unmaps it) until put_page; then it is freed, and a kmap of it is a
    /// use after free.
    @Test func aReferenceKeepsAPinnedPagePastUnpinUntilThePut() throws {
        let probe = try ShimProbe()
        let address = probe.address(0)
        try probe.space.write(address, payload(0, 1))
        let frame = probe.space.translate(address).frame
        #expect(try probe.run(.pin, [address, 1, 1]).result == 1)
        #expect(try probe.run(.page, [ShimProbe.pinned(0), PageOp.get.rawValue]).result == 0)
        try probe.run(.unpinOne, [0, 1])
        #expect(probe.pinsHeld == 1, "the reference keeps the pin behind it")

        try probe.space.unmap(start: address, length: 4096)
        #expect(probe.machine.memory.pincount(of: frame) == 1, "the unmapped frame is held, not freed")
        #expect(try probe.run(.kmapRead, [7, 1]).bytes == payload(0, 1), "kmap of the referenced page reads it")
        #expect(probe.violations(at: address).isEmpty, "\(probe.violations(at: address))")

        try probe.run(.page, [7, PageOp.put.rawValue])
        #expect(probe.pinsHeld == 0, "the last put_page lets the frame go")
        _ = try probe.run(.kmapRead, [7, 1])
        let found = probe.violations(at: address)
        #expect(found.contains(.useAfterFree) || found.contains(.staleTranslation), "a kmap after the last put: \(found)")
        #expect(probe.reports.isEmpty, "\(probe.reports)")
        probe.instance.destroy()
    }

    /// References count: two folio_get, the pin goes, the first folio_put
    /// keeps the page, the second lets it go. A put_page with no reference
    /// left is reported (Linux would free a page in use).
    @Test func referencesCountAndAnExtraPutIsABug() throws {
        let probe = try ShimProbe()
        let address = probe.address(1)
        try probe.space.write(address, payload(1, 1))
        #expect(try probe.run(.pin, [address, 1, 0]).result == 1)
        try probe.run(.page, [ShimProbe.pinned(0), PageOp.folioGet.rawValue])
        try probe.run(.page, [ShimProbe.pinned(0), PageOp.folioGet.rawValue])
        try probe.run(.unpinOne, [0, 1])
        try probe.run(.page, [7, PageOp.folioPut.rawValue])
        #expect(probe.pinsHeld == 1, "one reference left")
        try probe.run(.page, [7, PageOp.put.rawValue])
        #expect(probe.pinsHeld == 0)
        #expect(probe.reports.isEmpty, "\(probe.reports)")
        try probe.run(.page, [7, PageOp.put.rawValue])
        #expect(probe.reports.count == 1 && probe.reports[0].hasPrefix("BUG: put_page of a page without a reference"), "\(probe.reports)")
        #expect(probe.pinsHeld == 0)
        probe.instance.destroy()
    }

    /// A reference taken while the pin is still held, and the pin given
    /// back first with unpin_user_pages_dirty_lock: the dirty report is
    /// made at the unpin (the page stays held for the reference).
    @Test func anUnpinThatKeepsThePinForAReferenceStillReportsTheDirtyPage() throws {
        let probe = try ShimProbe(pages: 4, fileBacked: true)
        let file = try #require(probe.file)
        let address = probe.address(0)
        try probe.space.write(address, payload(0, 1))
        #expect(try probe.run(.pin, [address, 1, 1]).result == 1)
        _ = probe.machine.writeback(file)
        #expect(!probe.frameFlags(address).contains(.dirty))
        try probe.run(.page, [ShimProbe.pinned(0), PageOp.get.rawValue])
        try probe.run(.unpin, [1])
        #expect(probe.frameFlags(address).contains(.dirty), "unpin_user_pages_dirty_lock reported the write")
        #expect(probe.pinsHeld == 1)
        try probe.run(.page, [7, PageOp.put.rawValue])
        #expect(probe.pinsHeld == 0 && probe.reports.isEmpty, "\(probe.reports)")
        probe.instance.destroy()
    }

    /// get_page of a page hmm_range_fault returned, which nothing holds,
    /// taken under the driver's spin lock as Linux drivers do: a reference
    /// on the frame itself (the host's page_get, ABI 1.6), which neither
    /// sleeps nor takes the mmap lock. The page outlives its unmapping and
    /// stays good to kmap until put_page; then it is freed.
    @Test func getPageOfAFaultedPageHoldsTheFrameUntilThePut() throws {
        let probe = try ShimProbe()
        let address = probe.address(0)
        try probe.space.write(address, payload(0, 1))
        let frame = probe.space.translate(address).frame
        #expect(try probe.run(.hmmFault, [address, 0, UInt64(try probe.run(.readBegin).result), 0]).result == 0)
        let references = probe.machine.memory.refcount(of: frame)
        try probe.run(.page, [0, PageOp.getLocked.rawValue])
        #expect(probe.reports.isEmpty && probe.instance.violations.count == 0, "\(probe.reports)")
        #expect(probe.machine.violations.count == 0, "no context violation: nothing that sleeps under the spin lock")
        #expect(probe.machine.memory.refcount(of: frame) == references + 1, "a reference on the frame")
        #expect(probe.pinsHeld == 0, "not a pin")

        let generation = probe.machine.memory.generation(of: frame)
        try probe.space.unmap(start: address, length: 4096)
        #expect(probe.machine.memory.generation(of: frame) == generation, "the unmapped frame is not freed")
        #expect(try probe.run(.kmapRead, [0, 1]).bytes == payload(0, 1), "kmap of the referenced page reads it")
        #expect(probe.violations(at: address).isEmpty, "\(probe.violations(at: address))")

        try probe.run(.page, [0, PageOp.put.rawValue])
        #expect(probe.machine.memory.generation(of: frame) != generation, "the last put freed it")
        _ = try probe.run(.kmapRead, [0, 1])
        #expect(probe.violations(at: address).contains(.useAfterFree), "\(probe.violations(at: address))")
        #expect(probe.reports.isEmpty && probe.instance.violations.count == 0, "\(probe.reports) \(probe.instance.violations.snapshot)")
        probe.instance.destroy()
    }

    /// Reclaim unmaps a page with a reference but cannot free it (Linux:
    /// shrink_folio_list finds the extra reference and keeps the folio, in
    /// the swap cache): the frame stays, and the device's kmap through its
    /// reference reads it without a finding. After put_page the CPU gets
    /// the same data back.
    @Test func reclaimCannotFreeAReferencedPage() throws {
        let probe = try ShimProbe()
        let address = probe.address(0)
        try probe.space.write(address, payload(0, 1))
        #expect(try probe.run(.hmmFault, [address, 0, UInt64(try probe.run(.readBegin).result), 0]).result == 0)
        try probe.run(.page, [0, PageOp.get.rawValue])
        let frame = probe.space.translate(address).frame
        let generation = probe.machine.memory.generation(of: frame)
        #expect(try probe.machine.pageOut(probe.space, start: address, length: 4096) == 0, "not paged out: referenced")
        #expect(!probe.space.translate(address).isPresent, "but unmapped, as Linux's try_to_unmap does")
        #expect(probe.machine.memory.generation(of: frame) == generation, "and not freed")
        #expect(try probe.run(.kmapRead, [0, 1]).bytes == payload(0, 1), "the device's reference still reaches it")
        #expect(probe.violations(at: address).isEmpty, "\(probe.violations(at: address))")
        try probe.run(.page, [0, PageOp.put.rawValue])
        #expect(try probe.space.read(address) == payload(0, 1))
        #expect(probe.reports.isEmpty && probe.instance.violations.count == 0, "\(probe.reports)")
        probe.instance.destroy()
    }

    /// get_page of a page freed since hmm_range_fault returned it (the
    /// driver kept it past its invalidation) is the use after free it is:
    /// refused and reported by the host, nothing taken; its put_page is not
    /// reported again. A device-private page cannot be held: refused, a BUG.
    @Test func getPageOfAFreedOrDevicePageIsRefused() throws {
        let probe = try ShimProbe()
        try probe.space.write(probe.address(0), payload(0, 1))
        #expect(try probe.run(.hmmFault, [probe.address(0), 0, UInt64(try probe.run(.readBegin).result), 0]).result == 0)
        try probe.space.unmap(start: probe.address(0), length: 4096)
        try probe.run(.page, [0, PageOp.get.rawValue])
        let refused = probe.instance.violations.snapshot.map(\.problem)
        #expect(refused.count == 1 && refused[0].contains("was freed since the translation was taken (a use after free)"), "\(refused)")
        try probe.run(.page, [0, PageOp.put.rawValue])
        #expect(probe.reports.isEmpty && probe.instance.violations.count == 1, "\(probe.reports)")

        try probe.space.write(probe.address(1), payload(1, 1))
        #expect(try probe.run(.glueToDevice, [probe.address(1)]).result == 1)
        #expect(try probe.run(.hmmFault, [probe.address(1), 0, UInt64(try probe.run(.readBegin).result), 1]).result == 0)
        try probe.run(.page, [1, PageOp.get.rawValue])
        #expect(probe.reports.count == 1 && probe.reports[0].hasPrefix("BUG: get_page of a device-private page"), "\(probe.reports)")
        probe.instance.destroy()
    }

    /// A reference never put is reported when the device goes away, and
    /// what is behind it (the kept pin, the host reference) stays for the
    /// lab's own leak check, which reports it and gives it back.
    @Test func aReferenceNeverPutIsReportedAtDestroy() throws {
        let probe = try ShimProbe()
        try probe.space.populate(start: probe.base, length: 2 * 4096, write: true)
        #expect(try probe.run(.pin, [probe.base, 1, 1]).result == 1)
        try probe.run(.page, [ShimProbe.pinned(0), PageOp.get.rawValue])
        try probe.run(.unpinOne, [0, 1])
        #expect(try probe.run(.hmmFault, [probe.address(1), 0, UInt64(try probe.run(.readBegin).result), 0]).result == 0)
        try probe.run(.page, [0, PageOp.get.rawValue])
        #expect(probe.reports.isEmpty, "\(probe.reports)")
        probe.instance.destroy()
        #expect(probe.reports.contains { $0.hasPrefix("BUG: get_page reference(s) never put") }, "\(probe.reports)")
        let leaks = probe.instance.violations.snapshot.filter { $0.kind == .leak }.map(\.problem)
        #expect(leaks.contains { $0.contains("pins") } && leaks.contains { $0.contains("1 page references") }, "\(leaks)")
        #expect(probe.pinsHeld == 0)
    }
}
