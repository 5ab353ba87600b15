import LabSync
import PluginHost
import Testing
import TestSupport
import VirtualMemory

/// The Linux shim's pins and page helpers, through the probe: gup's
/// partial answers and FOLL_WRITE, pinning another mm's pages from a
/// thread with none, unpin_user_page, set_page_dirty_lock and
/// folio_mark_dirty as the device's dirty report, mark_page_accessed,
/// device-private pages, and the highmem copy helpers as checked DMA.
@Suite("Linux shim: pins, page and highmem helpers")
struct LinuxShimPageTests {
    /// probe.h's `enum probe_pin_variant`.
    enum PinVariant: UInt64 { case fast = 1, remote, remoteLocked, remoteUnlocked, remoteNoLock }

    /// probe.h's `enum probe_page_op`.
    enum PageOp: UInt64 {
        case dirtyLock = 1, folioDirty, accessed, folioAccessed, devicePrivate, zoneDevice, folioSame, folioChecks
        case get, put, folioGet, folioPut, getLocked
    }

    /// probe.h's `enum probe_highmem_op`.
    enum HighmemOp: UInt64 { case memcpyFromPage = 1, memcpyToPage, clearHighpage, copyHighpage, kmapLocalFolio }

    static func pin(_ probe: ShimProbe, _ variant: PinVariant, _ address: UInt64, _ pages: Int64, _ flags: UInt64 = 0,
                    noMM: Bool = false) throws -> ShimProbe.Reply {
        try probe.run(.pinVariant, [address, UInt64(bitPattern: pages), flags, variant.rawValue], noMM: noMM)
    }

    /// Linux's gup pins from the first page on and answers how many it
    /// pinned: fewer than asked at a hole (the caller owns those pins), an
    /// error only when the first page cannot be pinned.
    @Test func pinUserPagesFastPinsUpToTheFirstPageItCannot() throws {
        let probe = try ShimProbe()
        let write = ShimProbe.FOLL_WRITE | ShimProbe.FOLL_LONGTERM
        try probe.space.populate(start: probe.base, length: 4 * 4096, write: true)
        try probe.space.unmap(start: probe.address(2), length: 4096)
        #expect(try Self.pin(probe, .fast, probe.address(0), 4, write).result == 2, "pages 0 and 1, then the hole")
        #expect(probe.pinsHeld == 2)
        try probe.run(.unpin, [0])
        #expect(probe.pinsHeld == 0)
        #expect(try Self.pin(probe, .fast, probe.address(2), 2, write).result == ShimProbe.EFAULT, "the first page is the hole")
        #expect(try Self.pin(probe, .fast, probe.address(0), 0).result == 0, "nr_pages 0: 0")
        #expect(try Self.pin(probe, .fast, probe.address(0), -1).result == 0, "nr_pages negative: 0, as Linux documents")
        #expect(probe.pinsHeld == 0)

        // An unaligned start is the page that contains it.
        #expect(try Self.pin(probe, .fast, probe.address(1) + 100, 1).result == 1)
        #expect(try probe.run(.pageToPFN, [7]).result == Int64(probe.space.translate(probe.address(1)).frame))
        try probe.run(.unpin, [0])

        // FOLL_WRITE needs a writable mapping; without it a read-only one pins.
        try probe.space.protect(start: probe.address(3), length: 4096, .read)
        #expect(try Self.pin(probe, .fast, probe.address(3), 1, write).result == ShimProbe.EFAULT)
        #expect(try Self.pin(probe, .fast, probe.address(3), 1).result == 1)
        try probe.run(.unpin, [0])
        #expect(probe.pinsHeld == 0 && probe.reports.isEmpty, "\(probe.reports)")
        probe.instance.destroy()
    }

    /// FOLL_WRITE pins the page the CPU will read (a never-written page gets
    /// its own frame, writable): the device's write through the pin reaches
    /// the CPU. A read pin of the same kind of page is the shared zero page,
    /// and a device write through it is a write through a read-only page.
    @Test func follWritePinsAPageTheDeviceMayWrite() throws {
        let probe = try ShimProbe()
        let (written, read) = (probe.address(5), probe.address(6))
        #expect(try Self.pin(probe, .fast, written, 1, ShimProbe.FOLL_WRITE).result == 1)
        #expect(probe.space.translate(written).isWritable)
        try probe.run(.highmem, [HighmemOp.memcpyToPage.rawValue, ShimProbe.pinned(0), 0, 16], bytes: payload(5, 3))
        try probe.run(.unpin, [1])
        #expect(try probe.space.read(written) == payload(5, 3))
        #expect(probe.violations(at: written).isEmpty, "\(probe.violations(at: written))")

        #expect(try Self.pin(probe, .fast, read, 1).result == 1)
        try probe.run(.highmem, [HighmemOp.memcpyToPage.rawValue, ShimProbe.pinned(0), 0, 16], bytes: payload(6, 3))
        try probe.run(.unpin, [0])
        #expect(probe.violations(at: read).contains(.writeThroughReadOnly), "\(probe.violations(at: read))")
        #expect(try probe.space.read(read) != payload(6, 3), "the write did not reach the CPU's page")
        probe.instance.destroy()
    }

    /// pin_user_pages_remote pins the mm it is given: from a thread with no
    /// current->mm (a kernel thread's view), where pin_user_pages_fast has
    /// nothing to pin. With `locked` NULL or *locked set the caller holds
    /// mmap_lock (asserted); with *locked 0 the callee takes it itself.
    @Test func pinUserPagesRemotePinsTheMmItIsGiven() throws {
        let probe = try ShimProbe()
        try probe.space.populate(start: probe.base, length: 4 * 4096, write: true)
        #expect(try Self.pin(probe, .fast, probe.address(0), 2, noMM: true).result == ShimProbe.EFAULT, "no current->mm")
        for variant in [PinVariant.remote, .remoteLocked, .remoteUnlocked] {
            let pinned = try Self.pin(probe, variant, probe.address(0), 3, ShimProbe.FOLL_WRITE, noMM: true)
            #expect(pinned.result == 3, "\(variant): \(pinned)")
            if variant == .remoteLocked { #expect(pinned.arguments[1] == 1, "the lock was not dropped: *locked stays 1") }
            if variant == .remoteUnlocked { #expect(pinned.arguments[1] == 0, "*locked 0: the callee's lock, not left held") }
            #expect(probe.pinsHeld == 3, "\(variant)")
            #expect(try probe.run(.pageToPFN, [7]).result == Int64(probe.space.translate(probe.address(0)).frame), "\(variant)")
            try probe.run(.unpin, [0], noMM: true)
        }
        // Partly mapped: as many as there are.
        try probe.space.unmap(start: probe.address(3), length: 4096)
        #expect(try Self.pin(probe, .remote, probe.address(2), 2, noMM: true).result == 1)
        try probe.run(.unpin, [0], noMM: true)
        #expect(probe.reports.isEmpty, "\(probe.reports)")

        // locked NULL and no mmap_lock held: Linux's mmap_assert_locked warns.
        #expect(try Self.pin(probe, .remoteNoLock, probe.address(0), 1, noMM: true).result == 1)
        #expect(probe.reports.count == 1 && probe.reports[0].hasPrefix("WARN: mmap_assert_locked(mm) at page.c:"), "\(probe.reports)")
        try probe.run(.unpin, [0], noMM: true)
        #expect(probe.pinsHeld == 0)
        probe.instance.destroy()
    }

    /// unpin_user_page returns one pin (and no dirty report); a second
    /// unpin of the same page is reported.
    @Test func unpinUserPageReturnsOnePinAndASecondUnpinIsABug() throws {
        let probe = try ShimProbe()
        try probe.space.populate(start: probe.base, length: 3 * 4096, write: true)
        #expect(try probe.run(.pin, [probe.address(0), 3, 1]).result == 3)
        for page in 0..<3 {
            try probe.run(.unpinOne, [UInt64(page), 0])
            #expect(probe.pinsHeld == 2 - page, "after unpinning page \(page)")
        }
        #expect(probe.reports.isEmpty, "\(probe.reports)")
        try probe.run(.unpinOne, [1, 1])
        #expect(probe.reports.count == 1 && probe.reports[0].contains("unpin of a page this handle never pinned (or unpinned twice) at page.c:"),
                "\(probe.reports)")
        probe.instance.destroy()
    }

    /// The pattern of an RDMA driver: pin for writing, the device writes,
    /// the driver reports it (set_page_dirty_lock, or folio_mark_dirty of
    /// page_folio), unpin_user_page. The lab sees the report as a dirty
    /// page that writeback keeps; a write nobody reported, to a page
    /// writeback had cleaned, is lost with the page, as in Linux.
    @Test func setPageDirtyLockAndFolioMarkDirtyAreTheDevicesDirtyReport() throws {
        let probe = try ShimProbe(pages: 4, fileBacked: true)
        let file = try #require(probe.file)
        for page in 0..<3 { try probe.space.write(probe.address(page), payload(page, 1)) }
        #expect(try probe.run(.pin, [probe.address(0), 3, 1]).result == 3)
        _ = probe.machine.writeback(file)
        for page in 0..<3 {
            #expect(!probe.frameFlags(probe.address(page)).contains(.dirty), "writeback cleaned page \(page)")
            try probe.run(.highmem, [HighmemOp.memcpyToPage.rawValue, ShimProbe.pinned(page), 0, 16], bytes: payload(page, 2))
        }
        #expect(try probe.run(.page, [ShimProbe.pinned(0), PageOp.dirtyLock.rawValue]).result == 1)
        #expect(try probe.run(.page, [ShimProbe.pinned(1), PageOp.folioDirty.rawValue]).result == 1)
        #expect(probe.frameFlags(probe.address(0)).contains(.dirty) && probe.frameFlags(probe.address(1)).contains(.dirty))
        #expect(!probe.frameFlags(probe.address(2)).contains(.dirty), "no report for page 2")
        for page in 0..<3 { try probe.run(.unpinOne, [UInt64(page), page == 2 ? 1 : 0]) }
        #expect(!probe.frameFlags(probe.address(2)).contains(.dirty), "unpin_user_page is no dirty report")

        #expect(try probe.machine.pageOut(probe.space, start: probe.base, length: 3 * 4096) == 3)
        #expect(try probe.space.read(probe.address(0)) == payload(0, 2), "set_page_dirty_lock: written back")
        #expect(try probe.space.read(probe.address(1)) == payload(1, 2), "folio_mark_dirty: written back")
        #expect(try probe.space.read(probe.address(2)) == payload(2, 1), "unreported: the device's write went with the page")
        #expect(probe.machine.violations.count == 0 && probe.reports.isEmpty, "\(probe.machine.violations.snapshot) \(probe.reports)")
        probe.instance.destroy()
    }

    @Test func markPageAccessedIsTheDevicesUseThatReclaimReads() throws {
        let probe = try ShimProbe()
        for page in 0..<2 {
            try probe.space.populate(start: probe.address(page), length: 4096, write: true)
            #expect(try probe.run(.hmmFault, [probe.address(page), 0, UInt64(try probe.run(.readBegin).result), UInt64(page)]).result == 0)
            #expect(!probe.frameFlags(probe.address(page)).contains(.referenced))
        }
        try probe.run(.page, [0, PageOp.accessed.rawValue])
        try probe.run(.page, [1, PageOp.folioAccessed.rawValue])
        #expect(probe.frameFlags(probe.address(0)).contains(.referenced), "mark_page_accessed")
        #expect(probe.frameFlags(probe.address(1)).contains(.referenced), "folio_mark_accessed")
        #expect(probe.reports.isEmpty, "\(probe.reports)")
        probe.instance.destroy()
    }

    /// page_folio of a 4 KiB page: one folio per page, folio_page(folio, 0)
    /// the page, folio_pfn its frame; two pages, two folios.
    @Test func pageFolioIsThePagesOwnFolio() throws {
        let probe = try ShimProbe()
        try probe.space.populate(start: probe.base, length: 2 * 4096, write: true)
        for page in 0..<2 {
            #expect(try probe.run(.hmmFault, [probe.address(page), 0, UInt64(try probe.run(.readBegin).result), UInt64(page)]).result == 0)
        }
        #expect(try probe.run(.page, [0, PageOp.folioChecks.rawValue]).result == 7)
        #expect(try probe.run(.page, [0, PageOp.folioSame.rawValue, 0]).result == 1)
        #expect(try probe.run(.page, [0, PageOp.folioSame.rawValue, 1]).result == 0)
        probe.instance.destroy()
    }

    /// A page in the instance's own device memory is device-private (and so
    /// in ZONE_DEVICE); a page of system memory is neither.
    @Test func aPageInTheDevicesMemoryIsDevicePrivateAndZoneDevice() throws {
        let probe = try ShimProbe()
        try probe.space.write(probe.address(0), payload(0, 1))
        try probe.space.write(probe.address(1), payload(1, 1))
        #expect(try probe.run(.glueToDevice, [probe.address(0)]).result == 1, "migrated")
        for page in 0..<2 {
            #expect(try probe.run(.hmmFault, [probe.address(page), 0, UInt64(try probe.run(.readBegin).result), UInt64(page)]).result == 0)
        }
        #expect(try probe.run(.page, [0, PageOp.devicePrivate.rawValue]).result == 1)
        #expect(try probe.run(.page, [0, PageOp.zoneDevice.rawValue]).result == 1)
        #expect(try probe.run(.page, [1, PageOp.devicePrivate.rawValue]).result == 0)
        #expect(try probe.run(.page, [1, PageOp.zoneDevice.rawValue]).result == 0)
        #expect(try probe.run(.kmapRead, [0, 1]).bytes == payload(0, 1), "the device reads its own page")
        #expect(probe.reports.isEmpty && probe.machine.violations.count == 0, "\(probe.reports) \(probe.machine.violations.snapshot)")
        probe.instance.destroy()
        #expect(try probe.space.read(probe.address(0)) == payload(0, 1), "the page came home with its data")
    }

    /// memcpy_from_page and memcpy_to_page copy at an offset and leave the
    /// rest of the page alone; clear_highpage zeroes it, copy_highpage
    /// copies a page; each is a checked DMA, so a page kept past its
    /// invalidation is found at the copy, and a range past the page's end
    /// is Linux's VM_BUG_ON.
    @Test func theHighmemCopyHelpersAreCheckedDeviceAccesses() throws {
        let probe = try ShimProbe()
        for page in 0..<3 { try probe.space.write(probe.address(page), payload(page, 1)) }
        for page in 0..<3 {
            #expect(try probe.run(.hmmFault, [probe.address(page), 1, UInt64(try probe.run(.readBegin).result), UInt64(page)]).result == 0)
        }
        let from = try probe.run(.highmem, [HighmemOp.memcpyFromPage.rawValue, 0, 1, 15])
        #expect(Array(from.bytes.prefix(15)) == Array(payload(0, 1).dropFirst()), "bytes 1..<16 of page 0: \(from.bytes)")
        let folio = try probe.run(.highmem, [HighmemOp.kmapLocalFolio.rawValue, 0, 2, 14])
        #expect(Array(folio.bytes.prefix(14)) == Array(payload(0, 1).dropFirst(2)), "kmap_local_folio at offset 2: \(folio.bytes)")

        try probe.run(.highmem, [HighmemOp.memcpyToPage.rawValue, 1, 4, 3], bytes: [0xA1, 0xA2, 0xA3])
        var expected = payload(1, 1)
        expected.replaceSubrange(4..<7, with: [0xA1, 0xA2, 0xA3])
        #expect(try probe.space.read(probe.address(1)) == expected, "only bytes 4..<7 changed")

        try probe.run(.highmem, [HighmemOp.copyHighpage.rawValue, 2, 0, 1])
        #expect(try probe.space.read(probe.address(2)) == expected, "page 2 is now page 1")
        try probe.run(.highmem, [HighmemOp.clearHighpage.rawValue, 0])
        #expect(try probe.space.read(probe.address(0)) == [UInt8](repeating: 0, count: 16))
        #expect(probe.machine.violations.count == 0 && probe.reports.isEmpty, "\(probe.machine.violations.snapshot) \(probe.reports)")

        // Past the page's end: reported, nothing copied.
        try probe.run(.highmem, [HighmemOp.memcpyToPage.rawValue, 1, 4090, 16], bytes: payload(9, 9))
        #expect(probe.reports.count == 1 && probe.reports[0].hasPrefix("BUG_ON: offset + length > "), "\(probe.reports)")
        #expect(probe.reports.first?.hasSuffix("in memcpy_to_page()") == true, "\(probe.reports)")
        #expect(try probe.space.read(probe.address(1)) == expected)

        // Page 1 kept past reclaim: memcpy_to_page of it is found.
        #expect(try probe.machine.pageOut(probe.space, start: probe.address(1), length: 4096) == 1)
        try probe.run(.highmem, [HighmemOp.memcpyToPage.rawValue, 1, 0, 16], bytes: payload(1, 7))
        let found = probe.violations(at: probe.address(1))
        #expect(found.contains(.useAfterFree) || found.contains(.staleTranslation), "\(found)")
        #expect(try probe.space.read(probe.address(1)) == expected, "the stale write did not reach the page")
        probe.instance.destroy()
    }
}
