import LabSync
import PluginHost
import Testing
import TestSupport
import VirtualMemory

/// hmm_range_fault over ranges: Linux's snapshot mode (entries without
/// HMM_PFN_REQ_FAULT report what is mapped and fault nothing, on the
/// host's lookup_range, ABI 1.6), mixed requests, and the map order of a
/// page of a huge mapping (hmm_pfn_to_map_order, PMD_SHIFT - PAGE_SHIFT).
@Suite("Linux shim: hmm_range_fault snapshots and huge pages")
struct LinuxShimHMMTests {
    /// probe.h's `enum probe_hmm_flags`.
    struct Flags: OptionSet {
        let rawValue: UInt64
        static let faultAll = Flags(rawValue: 1), write = Flags(rawValue: 2), faultOdd = Flags(rawValue: 4)
        static let staleInput = Flags(rawValue: 8)
    }

    static func range(_ probe: ShimProbe, _ start: UInt64, _ pages: Int, _ flags: Flags) throws -> ShimProbe.Reply {
        let seq = UInt64(try probe.run(.readBegin).result)
        return try probe.run(.hmmRange, [start, UInt64(pages), flags.rawValue, seq])
    }

    /// No HMM_PFN_REQ_FAULT: valid (and writable) entries where a page is
    /// mapped, 0 where none is (whatever the entry held before), and
    /// nothing faulted in: the holes stay holes.
    @Test func aSnapshotReportsWhatIsMappedAndFaultsNothing() throws {
        let probe = try ShimProbe()
        try probe.space.populate(start: probe.address(0), length: 4096, write: true)  // writable
        try probe.space.populate(start: probe.address(2), length: 4096, write: false)  // the zero page, read-only
        try probe.space.populate(start: probe.address(3), length: 4096, write: true)
        try probe.space.protect(start: probe.address(3), length: 4096, .none)  // PROT_NONE: nothing a device may use
        let resident = probe.space.residentPages.load(ordering: .relaxed)
        let snapshot = try Self.range(probe, probe.base, 6, [.staleInput])
        #expect(snapshot.result == 0, "\(snapshot)")
        #expect(snapshot.arguments[0] == 0b101, "pages 0 and 2 present, 1, 3, 4, 5 not: \(String(snapshot.arguments[0], radix: 2))")
        #expect(snapshot.arguments[1] == 0b1, "page 0 writable, page 2 (the zero page) read-only")
        #expect(snapshot.arguments[3] == 2)
        let frame = snapshot.bytes.prefix(8).reversed().reduce(UInt64(0)) { $0 << 8 | UInt64($1) }
        #expect(frame == UInt64(probe.space.translate(probe.address(0)).frame), "entry 0 is the page mapped there")
        #expect(probe.space.residentPages.load(ordering: .relaxed) == resident, "nothing was faulted in")
        #expect(!probe.space.translate(probe.address(1)).isPresent && !probe.space.translate(probe.address(4)).isPresent)
        #expect(probe.reports.isEmpty, "\(probe.reports)")

        // A snapshot entry is a translation like any other: kmap of it reads the page.
        try probe.space.write(probe.address(0), payload(0, 4))
        #expect(try Self.range(probe, probe.base, 1, []).result == 0)
        #expect(try probe.run(.kmapRead, [6, 1]).bytes == payload(0, 4))
        #expect(probe.machine.violations.count == 0, "\(probe.machine.violations.snapshot)")
        probe.instance.destroy()
    }

    /// A snapshot does not bring a page home from swap, and a write request
    /// without a fault request faults nothing either: a read-only page stays
    /// read-only and is reported without HMM_PFN_WRITE.
    @Test func aSnapshotLeavesSwappedAndReadOnlyPagesAsTheyAre() throws {
        let probe = try ShimProbe()
        for page in 0..<2 { try probe.space.write(probe.address(page), payload(page, 1)) }
        #expect(try probe.machine.pageOut(probe.space, start: probe.address(1), length: 4096) == 1)
        try probe.space.protect(start: probe.address(0), length: 4096, .read)
        let snapshot = try Self.range(probe, probe.base, 2, [.write])
        #expect(snapshot.result == 0)
        #expect(snapshot.arguments[0] == 0b1 && snapshot.arguments[1] == 0, "page 0 present read-only, page 1 swapped out")
        #expect(!probe.space.translate(probe.address(1)).isPresent, "still in swap")
        // With the fault asked for, the swapped page comes in.
        let faulted = try Self.range(probe, probe.address(1), 1, [.faultAll])
        #expect(faulted.result == 0 && faulted.arguments[0] == 1)
        #expect(probe.space.translate(probe.address(1)).isPresent)
        probe.instance.destroy()
    }

    /// Per-entry requests (pfn_flags_mask): only the entries that ask for a
    /// fault are faulted; the others report what is there.
    @Test func mixedRequestsFaultOnlyTheEntriesThatAsk() throws {
        let probe = try ShimProbe()
        try probe.space.populate(start: probe.address(2), length: 4096, write: true)
        let mixed = try Self.range(probe, probe.base, 6, [.faultOdd])
        #expect(mixed.result == 0, "\(mixed)")
        #expect(mixed.arguments[0] == 0b101110, "odd pages faulted in, page 2 was there, 0 and 4 not: \(String(mixed.arguments[0], radix: 2))")
        for page in [1, 3, 5] { #expect(probe.space.translate(probe.address(page)).isPresent, "page \(page) faulted") }
        for page in [0, 4] { #expect(!probe.space.translate(probe.address(page)).isPresent, "page \(page) not faulted") }
        probe.instance.destroy()
    }

    /// The sequence is checked first in snapshot mode too: an invalidation
    /// since read_begin is -EBUSY.
    @Test func aSnapshotAfterAnInvalidationIsBusy() throws {
        let probe = try ShimProbe()
        try probe.space.populate(start: probe.base, length: 4096, write: true)
        let seq = UInt64(try probe.run(.readBegin).result)
        try probe.space.protect(start: probe.base, length: 4096, .read)
        #expect(try probe.run(.hmmRange, [probe.base, 1, 0, seq]).result == ShimProbe.EBUSY)
        probe.instance.destroy()
    }

    /// A THP-backed range: every entry of the huge page carries map order
    /// 9 (2 MiB), from a fault and from a snapshot alike; once the huge page
    /// is split, the entries are order 0.
    @Test func aPageOfAHugeMappingCarriesMapOrderNine() throws {
        let probe = try ShimProbe(pages: 1024, frames: 4096, thp: true)
        #expect(probe.base % AddressSpace.hugeSize == 0, "the mapping starts on a 2 MiB boundary")
        try probe.space.write(probe.base, payload(0, 1))  // a huge fault: the whole first 2 MiB
        #expect(probe.space.translate(probe.base).isHuge)
        let faulted = try Self.range(probe, probe.base, 512, [.faultAll, .write])
        #expect(faulted.result == 0 && faulted.arguments[3] == 512, "\(faulted)")
        #expect(faulted.arguments[2] == 512, "every entry of the huge page has order 9: \(faulted.arguments[2])")
        let snapshot = try Self.range(probe, probe.base, 512, [])
        #expect(snapshot.result == 0 && snapshot.arguments[2] == 512, "a snapshot too: \(snapshot)")

        // Small pages in the second 2 MiB (one 4 KiB write after a split-off) are order 0.
        try probe.space.adviseHugePage(start: probe.address(512), length: AddressSpace.hugeSize, enable: false)
        try probe.space.write(probe.address(512), payload(1, 1))
        let small = try Self.range(probe, probe.address(512), 1, [.faultAll])
        #expect(small.result == 0 && small.arguments[3] == 1 && small.arguments[2] == 0, "\(small)")

        // Split the first huge page: its entries are order 0 from then on.
        try probe.space.protect(start: probe.address(1), length: 4096, .read)
        #expect(!probe.space.translate(probe.base).isHuge, "the protection change split it")
        let split = try Self.range(probe, probe.base, 512, [])
        #expect(split.result == 0 && split.arguments[3] == 512 && split.arguments[2] == 0, "\(split)")
        #expect(probe.reports.isEmpty, "\(probe.reports)")
        probe.instance.destroy()
    }
}
