import LabSync
import PluginHost
import Testing
import TestSupport
import VirtualMemory

/// The Linux shim's page references (get_page, put_page, folio_get,
/// folio_put): on a page the driver holds pinned, a reference keeps the
/// frame (and the page good to kmap) past unpin_user_page until the last
/// put_page; a reference on a page nothing holds cannot be expressed on
/// the plugin ABI and is refused, loudly.
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

    /// get_page of a page hmm_range_fault returned, which nothing holds:
    /// the ABI could keep it only by pinning its address (which sleeps and
    /// takes the mmap lock, where a driver holds its notifier spin lock),
    /// so it is refused and reported, and takes nothing; its put_page is not
    /// reported a second time.
    @Test func getPageOfAPageNothingHoldsIsRefusedAndReported() throws {
        let probe = try ShimProbe()
        try probe.space.populate(start: probe.base, length: 4096, write: true)
        #expect(try probe.run(.hmmFault, [probe.base, 0, UInt64(try probe.run(.readBegin).result), 0]).result == 0)
        try probe.run(.page, [0, PageOp.getLocked.rawValue])
        #expect(probe.reports.count == 1, "\(probe.reports)")
        #expect(probe.reports.first?.hasPrefix("BUG: get_page of a page no pin or reference holds") == true, "\(probe.reports)")
        #expect(probe.reports.first?.hasSuffix("in get_page()") == true, "\(probe.reports)")
        #expect(probe.pinsHeld == 0, "nothing was taken")
        #expect(probe.machine.violations.count == 0, "no context violation: nothing that sleeps was called under the spin lock")
        try probe.run(.page, [0, PageOp.put.rawValue])
        #expect(probe.reports.count == 1, "the refused get's put is not a second report: \(probe.reports)")
        probe.instance.destroy()
    }

    /// A reference never put is reported when the device goes away, and the
    /// pin behind it stays for the lab's own leak check.
    @Test func aReferenceNeverPutIsReportedAtDestroy() throws {
        let probe = try ShimProbe()
        try probe.space.populate(start: probe.base, length: 4096, write: true)
        #expect(try probe.run(.pin, [probe.base, 1, 1]).result == 1)
        try probe.run(.page, [ShimProbe.pinned(0), PageOp.get.rawValue])
        try probe.run(.unpinOne, [0, 1])
        #expect(probe.reports.isEmpty, "\(probe.reports)")
        probe.instance.destroy()
        #expect(probe.reports.contains { $0.hasPrefix("BUG: get_page reference(s) never put") }, "\(probe.reports)")
    }
}
