// A deliberately broken device plugin: a test_hmm-style mirror (as
// Examples/MirrorPluginSwift) with exactly one classic secondary-MMU bug,
// chosen by its options, so you can watch `mmulab run` catch it. Never
// copy it. Each bug, the Linux rule it breaks, and what catches it:
//
//   bug=stale          the invalidate callback sets the sequence but keeps
//                      its translations: the device goes on using frames
//                      the primary unmapped, freed and reused (the
//                      "backwards" order of Andrea Arcangeli, linux-kernel,
//                      2008-01-24, "Re: [kvm-devel] [PATCH] export notifier
//                      #1"). Stale translation / use after free.
//   bug=stale-ref      bug=stale with a page reference (get_page, ABI 1.6)
//                      on every page it faults in, as a driver that
//                      believes its reference keeps the page its own: the
//                      frames are not freed, but the process's pages move
//                      on (munmap, migration, copy-on-write) and the device
//                      keeps using the old ones after its callback
//                      returned. Stale translation (munmap-race).
//   bug=sleep          sleeps inside a non-blockable invalidation. Context
//                      violation.
//   bug=zap-at-end     a whole-space subscriber that zaps in
//                      invalidate_range_end instead of _start (after a
//                      device TLB shootdown that takes 50 µs): Linux frees
//                      gathered pages in between (zap_pte_range's
//                      mmu_gather). Stale translation / use after free.
//   bug=ignore-wp      ignores protection invalidations (mprotect, fork's
//                      and writeback's write-protect, soft-dirty) and keeps
//                      writing through its writable translations. Write
//                      through a read-only translation.
//   bug=no-dirty       never reports a page it wrote dirty; a page mapped
//                      writable but clean (a swapped-in page) is then
//                      dropped by reclaim with the write. Lost write.
//   bug=not-young      declares MMULAB_CAP_YOUNG and always answers "not
//                      young", so reclaim evicts pages it uses hot. Young
//                      answer wrong (the lab knows what the device touched).
//   bug=ignore-release a whole-space subscriber whose release does nothing:
//                      once released it hears nothing more, and keeps its
//                      translations past the exit. Use after free.
//   bug=zero-page      treats every translation of private memory as
//                      writable (it takes the shared zero page a read fault
//                      gives for its own page) and writes through it.
//                      Write through a read-only translation.
//   bug=longterm-pfn   registers every binding as an RDMA NIC without
//                      on-demand paging does (a long-term pin of the whole
//                      binding, no notifier), but looks the pages up with
//                      fault_range before pinning them and keeps those
//                      translations: the long-term pin moved the pages in
//                      movable memory elsewhere first (FOLL_LONGTERM), so
//                      the device uses frames the primary freed. Stale
//                      translation / use after free (longterm-pins).
//   bug=keep-exclusive does its atomics through pages it takes exclusive
//                      (make_exclusive), and skips every exclusive
//                      invalidation, as if each were its own conversion:
//                      it never checks the owner, so when the CPU takes a
//                      page back it keeps its exclusive entry and goes on
//                      writing through it. Stale translation
//                      (device-atomics).
//   bug=ignore-mremap  ignores mremap invalidations: the pages keep their
//                      frames, so it believes its translations still good,
//                      but they are good at the new address, not at the
//                      old one it uses them for. Stale translation
//                      (mremap-move).
//   bug=huge-split     maps a whole 2 MiB entry when fault_range says the
//                      page is part of a huge page (all 512 pages at once),
//                      keyed by its first page; ignores huge-page splits
//                      (the frames stay where they are), and from then on
//                      zaps that entry only for an invalidation that covers
//                      its first page: one that names another 4 KiB of the
//                      split page (reclaim evicting it, a copy-on-write)
//                      leaves the device on a freed frame. Use after free /
//                      stale translation (thp-storm).
//   bug=late-dirty     defers its dirty bookkeeping: the pages a zap finds
//                      written are reported dirty only later, by the device
//                      thread's next access, after the invalidation
//                      callback returned (as a driver that hands set_page_dirty
//                      to a work item would). By then reclaim may have
//                      written the page back clean and freed it. Use after
//                      free (set_dirty on a freed page), and the write lost.
//   bug=lazy-free      trusts a write fault to have dirtied the page, so it
//                      reports dirty only pages it faulted for reading and
//                      wrote later. After MADV_FREE a page stays mapped
//                      writable but clean, a write fault there faults
//                      nothing (hmm_range_fault sees a writable PTE), and
//                      reclaim discards the clean page with the device's
//                      write. Lost write (lazy-free-churn).

public import CDevicePluginABI
import DevicePluginKit
import Synchronization

/// One mirror entry: the translation and what the device did with it.
struct MirrorEntry {
    var pfn = PFN()
    var valid = false
    var writable = false
    var written = false
    var young = false
    /// Faulted in by a write access (bug=lazy-free believes the primary
    /// marked such a page dirty).
    var faultedForWrite = false
    /// Taken exclusive for atomics (make_exclusive).
    var exclusive = false
    /// Part of a 2 MiB entry (bug=huge-split): the index of its first page.
    var hugeFirst: Int? = nil
}

/// A binding's page table, whichever way it hears of invalidations.
protocol BrokenTable: AnyObject {
    var request: BindingRequest { get }
    /// Guarded by the device lock.
    var pages: [MirrorEntry] { get set }
    /// [blockable] Without the device lock: a token for the fault, or nil
    /// if an invalidation of `address` is in progress (the fault must wait).
    func faultBegin(_ address: UInt64) -> UInt64?
    /// Under the device lock: whether an invalidation raced the fault.
    func faultRaced(_ token: UInt64, _ address: UInt64) -> Bool
    /// [blockable] Unhooks the table from the host (detach).
    func unhook()
}

final class BrokenMirror: DevicePlugin {
    enum Bug: String, CaseIterable {
        case stale, sleep
        case staleReference = "stale-ref"
        case zapAtEnd = "zap-at-end", ignoreWriteProtect = "ignore-wp", noDirty = "no-dirty", notYoung = "not-young"
        case ignoreRelease = "ignore-release", zeroPage = "zero-page", lazyFree = "lazy-free", longTermPFN = "longterm-pfn"
        case keepExclusive = "keep-exclusive", ignoreMremap = "ignore-mremap", hugeSplit = "huge-split", lateDirty = "late-dirty"

        /// The bugs that live in a whole-space subscriber (start, end,
        /// young, release); the others in an interval subscription.
        var wantsWholeSpace: Bool { self == .zapAtEnd || self == .notYoung || self == .ignoreRelease }
    }

    static let info = PluginInfo(
        name: "mirror-broken", version: "2.0",
        summary: "A mirror device with one deliberate bug (options: bug=\(Bug.allCases.map(\.rawValue).joined(separator: "|"))), to show what mmulab catches.",
        capabilities: 0)

    let host: Host
    let bug: Bug
    /// A spin lock: DMA under it never sleeps.
    let lock: HostLock
    /// The owner its exclusive conversions announce (an object's address:
    /// unique while it lives, never 0).
    var owner: UInt64 { UInt64(UInt(bitPattern: ObjectIdentifier(self))) }
    /// bug=late-dirty: written pages zapped and not yet reported dirty
    /// (device lock held).
    var deferredDirty: [PFN] = []

    /// Whether an invalidation is one the device skips: its own page taken
    /// exclusive (the frame stays; it maps it next). BUG (keep-exclusive):
    /// every exclusive invalidation, the CPU taking a page back too.
    func skips(_ range: InvalidationRange) -> Bool {
        guard range.event == MMULAB_EVENT_EXCLUSIVE.rawValue else { return false }
        return bug == .keepExclusive || range.owner == owner
    }

    init(host: Host, options: String) throws(PluginError) {
        self.host = host
        var bug = Bug.stale
        for pair in options.split(separator: ",") {
            let parts = pair.split(separator: "=", maxSplits: 1).map(String.init)
            guard parts.count == 2, parts[0] == "bug", let chosen = Bug(rawValue: parts[1]) else {
                throw .invalid("unknown option '\(pair)' (options: bug=\(Bug.allCases.map(\.rawValue).joined(separator: "|")))")
            }
            bug = chosen
        }
        self.bug = bug
        lock = host.makeLock("mirror-broken device", spin: true)
    }

    func attach(_ request: BindingRequest) throws(PluginError) -> AnyObject {
        guard request.length > 0, request.start % 4096 == 0, request.length % 4096 == 0 else {
            throw .invalid("a binding must be page aligned and not empty")
        }
        if bug == .longTermPFN { return try PinnedTable(device: self, request: request) }
        if bug.wantsWholeSpace {
            let table = SpaceTable(device: self, request: request)
            try host.subscribe(addressSpace: request.addressSpace, table)
            return table
        }
        let table = IntervalTable(device: self, request: request)
        try host.insertInterval(addressSpace: request.addressSpace, start: request.start, length: request.length, table)
        return table
    }

    func detach(_ object: AnyObject) {
        if let pinned = object as? PinnedTable { return pinned.release(self) }
        let table = object as! any BrokenTable
        table.unhook()  // no callback runs after this
        for entry in table.pages where entry.valid && entry.written { reportDirty(entry) }
        for entry in table.pages where entry.valid { dropReference(entry) }
    }

    /// bug=stale-ref: the page reference an entry holds, put (the entry is
    /// being replaced or dropped).
    func dropReference(_ entry: MirrorEntry) {
        if entry.valid && entry.pfn.flags & UInt32(MMULAB_PFN_REFERENCED) != 0 { host.putPage(entry.pfn) }
    }

    /// The dirty state transfers (except with bug=no-dirty, and with
    /// bug=lazy-free for a page the device faulted in for a write).
    func reportDirty(_ entry: MirrorEntry) {
        if bug == .noDirty { return }
        if bug == .lazyFree && entry.faultedForWrite { return }  // BUG (lazy-free): "the write fault dirtied it"
        if bug == .lateDirty {
            deferredDirty.append(entry.pfn)  // BUG (late-dirty): reported after the callback returns
            return
        }
        host.setDirty(entry.pfn)
    }

    /// bug=late-dirty: reports the deferred pages dirty (the device thread,
    /// between accesses; by now their invalidations may be long over).
    func reportDeferredDirty() {
        let pages = lock.withLock { () -> [PFN] in
            defer { deferredDirty.removeAll(keepingCapacity: true) }
            return deferredDirty
        }
        for pfn in pages { host.setDirty(pfn) }
    }

    /// Drops the entries of `table` in `[start, end)`, reporting written
    /// pages dirty (device lock held).
    func zap(_ table: any BrokenTable, _ start: UInt64, _ end: UInt64) {
        let request = table.request
        var address = max(start, request.start)
        while address < min(end, request.start + request.length) {
            let index = Int((address - request.start) / 4096)
            address += 4096
            // BUG (huge-split): a 2 MiB entry goes only with its first page.
            if let first = table.pages[index].hugeFirst {
                let firstAddress = request.start + UInt64(first) * 4096
                guard firstAddress >= start && firstAddress < end else { continue }
                for k in first..<first + 512 {
                    if table.pages[k].valid && table.pages[k].written { reportDirty(table.pages[k]) }
                    table.pages[k] = MirrorEntry()
                }
                continue
            }
            if table.pages[index].valid && table.pages[index].written { reportDirty(table.pages[index]) }
            dropReference(table.pages[index])
            table.pages[index] = MirrorEntry()
        }
    }

    /// The aligned 2 MiB around page `index` of `table`, if it lies wholly
    /// in the binding: its first page's index.
    func hugeBlock(_ table: any BrokenTable, _ index: Int) -> Int? {
        let request = table.request
        let address = request.start + UInt64(index) * 4096
        let block = address & ~(UInt64(2 << 20) - 1)
        guard block >= request.start, block + (2 << 20) <= request.start + request.length else { return nil }
        return Int((block - request.start) / 4096)
    }

    func access(_ object: AnyObject, deviceAddress: UInt64, write: Bool, buffer: UnsafeMutableRawBufferPointer) throws(PluginError) {
        if let pinned = object as? PinnedTable {
            let request = pinned.request
            guard deviceAddress >= request.deviceAddress, deviceAddress < request.deviceAddress + request.length else {
                throw .fault("device address outside the binding")
            }
            guard !write || request.writable else { throw .fault("write to a read-only binding") }
            lock.withLock { pinned.access(self, index: Int((deviceAddress - request.deviceAddress) / 4096), write: write, buffer) }
            return
        }
        if bug == .lateDirty { reportDeferredDirty() }
        let table = object as! any BrokenTable
        let request = table.request
        guard deviceAddress >= request.deviceAddress, deviceAddress < request.deviceAddress + request.length else {
            throw .fault("device address outside the binding")
        }
        guard !write || request.writable else { throw .fault("write to a read-only binding") }
        let index = Int((deviceAddress - request.deviceAddress) / 4096)
        let address = request.start + UInt64(index) * 4096
        for attempt in 0..<1_000 {
            let done = lock.withLock { () -> Bool in
                let entry = table.pages[index]
                guard entry.valid, !write || entry.writable else { return false }
                table.pages[index].young = true
                if write {
                    host.dmaWrite(addressSpace: request.addressSpace, entry.pfn, from: UnsafeRawBufferPointer(buffer))
                    table.pages[index].written = true
                } else {
                    host.dmaRead(addressSpace: request.addressSpace, entry.pfn, into: buffer)
                }
                return true
            }
            if done { return }
            if attempt > 2 { host.sleep(nanoseconds: 20_000) }  // let an invalidation finish
            guard let token = table.faultBegin(address) else { continue }
            let pfn = try host.faultRange(addressSpace: request.addressSpace, start: address, length: 4096, write: write)[0]
            if bug == .hugeSplit, pfn.isHuge, let first = hugeBlock(table, index) {
                // BUG (huge-split): one 2 MiB entry for the huge page.
                let start = request.start + UInt64(first) * 4096
                let pfns = try host.faultRange(addressSpace: request.addressSpace, start: start, length: 2 << 20, write: write)
                lock.withLock {
                    guard !table.faultRaced(token, address), pfns.allSatisfy(\.isHuge) else { return }
                    for (k, p) in pfns.enumerated() {
                        table.pages[first + k] = MirrorEntry(
                            pfn: p, valid: true, writable: p.isWritable, young: true, faultedForWrite: write, hugeFirst: first)
                    }
                }
                continue
            }
            lock.withLock {
                guard !table.faultRaced(token, address) else { return }
                // BUG (zero-page): a read fault of private memory may give the
                // shared zero page, read-only; this device takes it as its own.
                let writable = pfn.isWritable || (bug == .zeroPage && request.writable)
                // BUG (stale-ref): "the reference keeps the page mine" (taken
                // as the ABI says: a current translation, under the lock
                // after the retry check; page_get never sleeps).
                var held = pfn
                if bug == .staleReference && host.offersPageReferences, let referenced = try? host.getPage(pfn) { held = referenced }
                dropReference(table.pages[index])
                table.pages[index] = MirrorEntry(pfn: held, valid: true, writable: writable, young: true, faultedForWrite: write)
            }
        }
        throw .busy("could not fault the page in")
    }
}

extension BrokenMirror {
    /// An atomic: through an entry taken exclusive (make_exclusive), which
    /// the device maps as after any fault, if no invalidation raced.
    func atomic(_ object: AnyObject, deviceAddress: UInt64, buffer: UnsafeMutableRawBufferPointer) throws(PluginError) {
        guard host.offersExclusive, let table = object as? any BrokenTable else {
            return try access(object, deviceAddress: deviceAddress, write: true, buffer: buffer)
        }
        let request = table.request
        guard deviceAddress >= request.deviceAddress, deviceAddress < request.deviceAddress + request.length, request.writable else {
            throw .fault("atomic outside the binding or through a read-only one")
        }
        let index = Int((deviceAddress - request.deviceAddress) / 4096)
        let address = request.start + UInt64(index) * 4096
        for attempt in 0..<1_000 {
            let done = lock.withLock { () -> Bool in
                let entry = table.pages[index]
                guard entry.valid, entry.exclusive else { return false }
                table.pages[index].young = true
                table.pages[index].written = true
                host.dmaWrite(addressSpace: request.addressSpace, entry.pfn, from: UnsafeRawBufferPointer(buffer))
                return true
            }
            if done { return }
            if attempt > 2 { host.sleep(nanoseconds: 20_000) }  // let an invalidation finish
            guard let token = table.faultBegin(address) else { continue }
            let pfn = try host.makeExclusive(addressSpace: request.addressSpace, address: address, owner: owner)
            lock.withLock {
                guard !table.faultRaced(token, address) else { return }
                table.pages[index] = MirrorEntry(pfn: pfn, valid: true, writable: true, young: true, faultedForWrite: true, exclusive: true)
            }
        }
        throw .busy("could not take the page exclusive")
    }
}

@_cdecl("mmulab_device_plugin_v1")
public func brokenMirrorEntry(_ hostMinor: UInt16, _ negotiated: UnsafeMutablePointer<UInt16>?) -> UnsafePointer<mmulab_device_plugin>? {
    DevicePluginExport.entry(BrokenMirror.self, hostMinor, negotiated)
}
