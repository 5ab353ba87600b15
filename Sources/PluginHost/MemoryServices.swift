import CDevicePluginABI
import CPluginOops
import LabSync
import MMUNotifier
import VirtualMemory

/// Primary memory for devices: `fault_range`, `pin` / `unpin`, `set_dirty`,
/// `mark_accessed`, checked DMA and page-table pages.
///
/// Every translation a plugin passes back is checked to be one the host
/// could have handed out, cheaply enough for the DMA path (a bound and a
/// generation, no lookup): a frame of the machine (or the zero page), or a
/// page of the instance's own device memory, in a generation it has
/// reached (a translation from a generation not reached yet was never
/// handed out; an older one is a translation gone stale, which is the DMA
/// check's business, not a misuse), at a page-aligned address inside the
/// model's address space. Pins and page-table pages are checked against
/// what the instance holds (its ledger).
enum MemoryServices {
    /// Puts each service below into the host table. The closures only forward: Swift forms a
    /// C function pointer from a literal closure or a global function, not from a static method.
    static func install(into t: inout mmulab_host) {
        t.fault_range = { MemoryServices.faultRange($0, $1, $2, $3, $4, $5, $6) }
        t.lookup_range = { MemoryServices.lookupRange($0, $1, $2, $3, $4, $5) }
        t.pin = { MemoryServices.pin($0, $1, $2, $3, $4, $5, $6) }
        t.unpin = { MemoryServices.unpin($0, $1, $2, $3) }
        t.set_dirty = { MemoryServices.setDirty($0, $1) }
        t.mark_accessed = { MemoryServices.markAccessed($0, $1) }
        t.dma_read = { MemoryServices.dmaRead($0, $1, $2, $3, $4) }
        t.dma_write = { MemoryServices.dmaWrite($0, $1, $2, $3, $4) }
        t.alloc_page_table_page = { MemoryServices.allocatePageTablePage($0, $1) }
        t.free_page_table_page = { MemoryServices.freePageTablePage($0, $1) }
    }

    /// [blockable] `fault_range`: the translations of a range, as hmm_range_fault
    /// (checked by `translate`).
    static func faultRange(
        _ ctx: UnsafeMutableRawPointer?, _ addressSpace: UInt64, _ start: UInt64, _ length: UInt64, _ flags: UInt32,
        _ pfns: UnsafeMutablePointer<mmulab_pfn>?, _ error: UnsafeMutablePointer<mmulab_error>?
    ) -> mmulab_status {
        guard let host = HostContext.from(ctx, "fault_range") else { return mmulab_status(MMULAB_ERR_INVALID) }
        CallFrames.enterService(host, "fault_range")
        defer { CallFrames.leave() }
        return host.translate(addressSpace, start, length, flags, pfns, error, pin: false)
    }

    /// [blockable] `lookup_range` (1.6): the translations of a range as the
    /// primary maps them now, faulting nothing in; MMULAB_PFN_NONE where
    /// nothing is mapped.
    static func lookupRange(
        _ ctx: UnsafeMutableRawPointer?, _ addressSpace: UInt64, _ start: UInt64, _ length: UInt64,
        _ pfns: UnsafeMutablePointer<mmulab_pfn>?, _ error: UnsafeMutablePointer<mmulab_error>?
    ) -> mmulab_status {
        guard let host = HostContext.from(ctx, "lookup_range") else { return mmulab_status(MMULAB_ERR_INVALID) }
        CallFrames.enterService(host, "lookup_range")
        defer { CallFrames.leave() }
        return host.lookup(addressSpace, start, length, pfns, error)
    }

    /// [blockable] `pin`: the frames stay until unpin, as pin_user_pages; each pin
    /// is recorded in the ledger (checked by `translate`).
    static func pin(
        _ ctx: UnsafeMutableRawPointer?, _ addressSpace: UInt64, _ start: UInt64, _ length: UInt64, _ flags: UInt32,
        _ pfns: UnsafeMutablePointer<mmulab_pfn>?, _ error: UnsafeMutablePointer<mmulab_error>?
    ) -> mmulab_status {
        guard let host = HostContext.from(ctx, "pin") else { return mmulab_status(MMULAB_ERR_INVALID) }
        CallFrames.enterService(host, "pin")
        defer { CallFrames.leave() }
        return host.translate(addressSpace, start, length, flags, pfns, error, pin: true)
    }

    /// [any-thread] `unpin`: only translations this instance holds pinned.
    static func unpin(_ ctx: UnsafeMutableRawPointer?, _ pfns: UnsafePointer<mmulab_pfn>?, _ count: UInt64, _ dirty: Bool) {
        guard let host = HostContext.from(ctx, "unpin") else { return }
        CallFrames.enterService(host, "unpin")
        defer { CallFrames.leave() }
        host.unpin(pfns, count, dirty: dirty)
    }

    /// [any-thread] `set_dirty`: the device wrote the page. A device page needs
    /// nothing: it comes home dirty.
    static func setDirty(_ ctx: UnsafeMutableRawPointer?, _ pfn: UnsafePointer<mmulab_pfn>?) {
        guard let host = HostContext.from(ctx, "set_dirty") else { return }
        CallFrames.enterService(host, "set_dirty")
        defer { CallFrames.leave() }
        guard let pfn = host.checked(pfn, "set_dirty"), !pfn.isDevicePrivate else { return }
        host.mark(pfn, dirty: true, service: "set_dirty")
    }

    /// [any-thread] `mark_accessed`: the device used the page. A device page is
    /// never reclaimed, so it needs nothing.
    static func markAccessed(_ ctx: UnsafeMutableRawPointer?, _ pfn: UnsafePointer<mmulab_pfn>?) {
        guard let host = HostContext.from(ctx, "mark_accessed") else { return }
        CallFrames.enterService(host, "mark_accessed")
        defer { CallFrames.leave() }
        guard let pfn = host.checked(pfn, "mark_accessed"), !pfn.isDevicePrivate else { return }
        host.mark(pfn, dirty: false, service: "mark_accessed")
    }

    /// [any-thread] `dma_read`: a device read through a translation, checked
    /// against the primary; none to an address space that has exited.
    static func dmaRead(
        _ ctx: UnsafeMutableRawPointer?, _ addressSpace: UInt64, _ pfn: UnsafePointer<mmulab_pfn>?, _ buffer: UnsafeMutableRawPointer?,
        _ length: UInt32
    ) {
        guard let host = HostContext.from(ctx, "dma_read") else { return }
        CallFrames.enterService(host, "dma_read")
        defer { CallFrames.leave() }
        guard let pfn = host.checked(pfn, "dma_read") else { return }
        guard let buffer else { return host.report("dma_read", "the buffer is NULL") }
        guard let space = host.liveSpace(addressSpace, pfn, write: false, service: "dma_read") else { return }
        host.machine.dmaAccess(space, host.referencedTranslation(pfn, "dma_read"), issuer: host.device, write: false) { page in
            buffer.copyMemory(from: page.baseAddress!, byteCount: min(Int(length), page.count))
        }
    }

    /// [any-thread] `dma_write`: a device write through a translation, checked
    /// against the primary; none to an address space that has exited.
    static func dmaWrite(
        _ ctx: UnsafeMutableRawPointer?, _ addressSpace: UInt64, _ pfn: UnsafePointer<mmulab_pfn>?, _ buffer: UnsafeRawPointer?,
        _ length: UInt32
    ) {
        guard let host = HostContext.from(ctx, "dma_write") else { return }
        CallFrames.enterService(host, "dma_write")
        defer { CallFrames.leave() }
        guard let pfn = host.checked(pfn, "dma_write") else { return }
        guard let buffer else { return host.report("dma_write", "the buffer is NULL") }
        guard let space = host.liveSpace(addressSpace, pfn, write: true, service: "dma_write") else { return }
        host.machine.dmaAccess(space, host.referencedTranslation(pfn, "dma_write"), issuer: host.device, write: true) { page in
            page.baseAddress!.copyMemory(from: buffer, byteCount: min(Int(length), page.count))
        }
    }

    /// [any-thread][reclaim] `alloc_page_table_page`: a page for the device's
    /// own page tables, held in the ledger; in reclaim only from a bounded reserve.
    static func allocatePageTablePage(_ ctx: UnsafeMutableRawPointer?, _ out: UnsafeMutablePointer<UInt64>?) -> mmulab_status {
        guard let host = HostContext.from(ctx, "alloc_page_table_page") else { return mmulab_status(MMULAB_ERR_INVALID) }
        CallFrames.enterService(host, "alloc_page_table_page")
        defer { CallFrames.leave() }
        guard let out else { return host.invalid(nil, "alloc_page_table_page", "pfn_out is NULL: the page could never be freed") }
        guard let page = host.machine.allocateDevicePageTablePage() else { return mmulab_status(MMULAB_ERR_NO_MEMORY) }
        let frame = Int32(truncatingIfNeeded: page.rawValue)
        let binding = CallFrames.currentBinding(of: host).binding
        host.ledger.withLock { ledger in
            ledger.pageTablePages[frame] = ResourceLedger.PageTableHold(generation: host.machine.memory.generation(of: frame), binding: binding)
            ledger.freedPageTablePages.remove(frame)
        }
        out.pointee = page.rawValue
        return mmulab_status(MMULAB_OK)
    }

    /// [any-thread][reclaim] `free_page_table_page` (with alloc_page_table_page):
    /// only a page this instance holds.
    static func freePageTablePage(_ ctx: UnsafeMutableRawPointer?, _ pfn: UInt64) {
        guard let host = HostContext.from(ctx, "free_page_table_page") else { return }
        CallFrames.enterService(host, "free_page_table_page")
        defer { CallFrames.leave() }
        host.freePageTablePage(pfn)
    }
}

extension HostContext {
    /// `set_dirty` or `mark_accessed` of a checked frame translation: the
    /// machine marks the frame if it is still in the translation's
    /// generation, and otherwise records a use after free
    /// (`Machine.markFromDevice`), unless the thread is in the instance's
    /// own invalidation callback for the page.
    func mark(_ pfn: mmulab_pfn, dirty: Bool, service: String) {
        machine.markFromDevice(translation(pfn), service: service, dirty: dirty, issuer: device) { self.origin(ofMarkAt: pfn.address) }
    }

    /// Where a mark of `address` comes from: if the thread is in one of
    /// this instance's invalidation callbacks whose range holds the
    /// address (its innermost call frame with a range), that range's space,
    /// and whether it is a start (an end is after the device let go);
    /// else the space of the instance's bindings over the address, if they
    /// are all in one (addresses of different spaces overlap, and the
    /// binding whose call the thread is in need not be the one the page
    /// came from: naming one would be a guess).
    func origin(ofMarkAt address: UInt64) -> Machine.MarkOrigin {
        var index = CallFrames.depth
        while index > 0 {
            index -= 1
            guard let frame = mmulab_oops_frame_at(index), frame.pointee.instance == opaque, frame.pointee.service == nil else { continue }
            if frame.pointee.subject == UInt32(MMULAB_OOPS_SUBJECT_RANGE.rawValue), frame.pointee.b <= address, address < frame.pointee.c {
                // Not the range's end: the page may be freed inside the
                // bracket (a zap's gather), so a report made only there is
                // the device's late one (bug=zap-at-end's kind).
                let atEnd = frame.pointee.operation.map { String(cString: $0) == "\(PluginCallback.invalidateRangeEnd)" } ?? false
                return Machine.MarkOrigin(space: AddressSpaceID(frame.pointee.a), duringOwnInvalidation: !atEnd)
            }
            break  // the innermost call into the plugin is not such a callback
        }
        let space = bindings.withLock { all -> AddressSpaceID? in
            let spaces = Set(all.values.filter { $0.start <= address && address < $0.end }.map(\.space))
            return spaces.count == 1 ? AddressSpaceID(spaces.first!) : nil
        }
        return Machine.MarkOrigin(space: space, duringOwnInvalidation: false)
    }

    /// The translation behind `pfn` if it is one the host could have handed
    /// this instance; nil (reported) otherwise. Cheap: the DMA path runs it.
    @inline(__always)
    func checked(_ pointer: UnsafePointer<mmulab_pfn>?, _ service: StaticString) -> mmulab_pfn? {
        guard let pointer else {
            report("\(service)", "the pfn pointer is NULL")
            return nil
        }
        let pfn = pointer.pointee
        if let problem = problem(with: pfn) {
            report("\(service)", problem)
            return nil
        }
        return pfn
    }

    /// What is wrong with `pfn` as a translation this instance was handed, or nil.
    @inline(__always)
    func problem(with pfn: mmulab_pfn) -> String? {
        guard pfn.address & 4095 == 0, pfn.address < AddressSpace.addressLimit else {
            return "address 0x\(String(pfn.address, radix: 16)) is not a page-aligned address the host handed out"
        }
        if pfn.flags & UInt32(MMULAB_PFN_NONE) != 0 { return "an entry lookup_range found nothing at (MMULAB_PFN_NONE) is not a translation" }
        if pfn.isDevicePrivate { return devicePageProblem(pfn) }
        // Frames 0..<frameCount are the machine's; frameCount is the zero page.
        guard pfn.pfn <= zeroFrame else { return "pfn#\(pfn.pfn) is not a frame of this machine (it has \(zeroFrame) frames)" }
        let current = machine.memory.generation(of: Int32(truncatingIfNeeded: pfn.pfn))
        guard pfn.generation >= 1, pfn.generation <= current else {
            return "pfn#\(pfn.pfn) generation \(pfn.generation) was never handed out (the frame is in generation \(current))"
        }
        return nil
    }

    private func devicePageProblem(_ pfn: mmulab_pfn) -> String? {
        let page = DevicePage(rawValue: pfn.pfn)
        guard let memory = machine.deviceMemory(of: page), page.index < memory.capacity else {
            return "\(page) is not a page of any device memory"
        }
        guard deviceMemories.withLock({ $0.contains { $0 === memory } }) else { return "\(page) is in another instance's device memory" }
        let current = memory.generation(of: page)  // device pages start in generation 0
        guard pfn.generation <= current else {
            return "\(page) generation \(pfn.generation) was never handed out (the page is in generation \(current))"
        }
        return nil
    }

    /// lookup_range: a snapshot of the range, checked as fault_range's arguments are.
    func lookup(
        _ addressSpace: UInt64, _ start: UInt64, _ length: UInt64, _ pfns: UnsafeMutablePointer<mmulab_pfn>?,
        _ errorOut: UnsafeMutablePointer<mmulab_error>?
    ) -> mmulab_status {
        let service = "lookup_range"
        guard let pfns else { return invalid(errorOut, service, "the pfn buffer is NULL") }
        let (end, overflow) = start.addingReportingOverflow(length)
        guard start % 4096 == 0, length > 0, length % 4096 == 0, !overflow, end <= AddressSpace.addressLimit else {
            return invalid(errorOut, service, "[0x\(String(start, radix: 16)), +\(length)) must be page aligned, nonzero and inside the address space")
        }
        let (found, status) = space(addressSpace, for: service, errorOut)
        guard let space = found else { return status }
        do {
            let entries = try space.lookupRange(start: start, length: length, devicePrivateOwner: devicePrivateOwner)
            for (i, entry) in entries.enumerated() {
                guard let t = entry else {
                    pfns[i] = mmulab_pfn(address: start + UInt64(i) * 4096, pfn: 0, generation: 0, flags: UInt32(MMULAB_PFN_NONE))
                    continue
                }
                pfns[i] = mmulab_pfn(
                    address: t.address, pfn: t.frame.rawValue, generation: t.generation,
                    flags: (t.writable ? UInt32(MMULAB_PFN_WRITABLE) : 0) | (t.devicePage != nil ? UInt32(MMULAB_PFN_DEVICE_PRIVATE) : 0)
                        | (t.huge ? UInt32(MMULAB_PFN_HUGE) : 0))
            }
            return mmulab_status(MMULAB_OK)
        } catch {
            if case .invalidArgument(let what) = error { return invalid(errorOut, service, what) }
            return fail(errorOut, PluginHost.status(for: error), "\(service) 0x\(String(start, radix: 16)): \(error)")
        }
    }

    /// fault_range and pin.
    func translate(
        _ addressSpace: UInt64, _ start: UInt64, _ length: UInt64, _ flags: UInt32,
        _ pfns: UnsafeMutablePointer<mmulab_pfn>?, _ errorOut: UnsafeMutablePointer<mmulab_error>?, pin: Bool
    ) -> mmulab_status {
        let service = pin ? "pin" : "fault_range"
        guard let pfns else { return invalid(errorOut, service, "the pfn buffer is NULL") }
        let (end, overflow) = start.addingReportingOverflow(length)
        guard start % 4096 == 0, length > 0, length % 4096 == 0, !overflow, end <= AddressSpace.addressLimit else {
            return invalid(errorOut, service, "[0x\(String(start, radix: 16)), +\(length)) must be page aligned, nonzero and inside the address space")
        }
        // Long-term pins are 1.5's: an older instance never meant the bit.
        let known = UInt32(MMULAB_FAULT_WRITE) | (pin && negotiatedMinor >= 5 ? UInt32(MMULAB_PIN_LONGTERM) : 0)
        guard flags & ~known == 0 else {
            return invalid(errorOut, service, "flags 0x\(String(flags, radix: 16)) are not MMULAB_FAULT_*\(pin && negotiatedMinor >= 5 ? " or MMULAB_PIN_LONGTERM" : "")")
        }
        let (found, status) = space(addressSpace, for: service, errorOut)
        guard let space = found else { return status }
        let write = flags & UInt32(MMULAB_FAULT_WRITE) != 0
        let longTerm = flags & UInt32(MMULAB_PIN_LONGTERM) != 0
        do {
            let translations = pin
                ? try space.pin(start: start, length: length, write: write, longTerm: longTerm)
                : try space.faultRange(start: start, length: length, write: write, devicePrivateOwner: devicePrivateOwner)
            if pin {
                let binding = owner(space: addressSpace, start: start, end: end)
                ledger.withLock { ledger in
                    for t in translations where UInt64(t.frame.rawValue) != zeroFrame {
                        ledger.notePin(Int32(truncatingIfNeeded: t.frame.rawValue), generation: t.generation, binding: binding, writable: t.writable)
                    }
                }
            }
            for (i, t) in translations.enumerated() {
                pfns[i] = mmulab_pfn(
                    address: t.address, pfn: t.frame.rawValue, generation: t.generation,
                    flags: (t.writable ? UInt32(MMULAB_PFN_WRITABLE) : 0) | (t.pinned ? UInt32(MMULAB_PFN_PINNED) : 0)
                        | (t.devicePage != nil ? UInt32(MMULAB_PFN_DEVICE_PRIVATE) : 0)
                        | (t.huge && negotiatedMinor >= 5 ? UInt32(MMULAB_PFN_HUGE) : 0))
            }
            return mmulab_status(MMULAB_OK)
        } catch {
            if case .invalidArgument(let what) = error { return invalid(errorOut, service, what) }
            return fail(errorOut, PluginHost.status(for: error), "\(service) 0x\(String(start, radix: 16)): \(error)")
        }
    }

    /// unpin: each translation must be one the instance holds pinned;
    /// those that are not are reported and left alone.
    func unpin(_ pfns: UnsafePointer<mmulab_pfn>?, _ count: UInt64, dirty: Bool) {
        guard count > 0 else { return }
        guard let pfns else { return report("unpin", "the pfn array is NULL (count \(count))") }
        guard count <= AddressSpace.addressLimit >> 12 else { return report("unpin", "count \(count) is more pages than an address space has") }
        let binding = CallFrames.currentBinding(of: self).binding
        var returned: [DeviceTranslation] = []
        var problems: [String] = []
        ledger.withLock { ledger in
            for index in 0..<Int(count) {
                let pfn = pfns[index]
                if let problem = problem(with: pfn) {
                    problems.append("entry \(index): \(problem)")
                } else if !pfn.isPinned || pfn.isDevicePrivate {
                    problems.append("entry \(index): pfn#\(pfn.pfn) is not a pinned translation (fault_range gave it; only pin's are unpinned)")
                } else if pfn.pfn == zeroFrame {
                    continue  // pinning the zero page took nothing
                } else if ledger.takePin(Int32(truncatingIfNeeded: pfn.pfn), generation: pfn.generation, preferring: binding) {
                    returned.append(translation(pfn))
                } else {
                    problems.append(
                        "entry \(index): pfn#\(pfn.pfn) generation \(pfn.generation) is not pinned by this instance (unpinned already, or more unpins than pins)")
                }
            }
        }
        for problem in problems.prefix(4) { report("unpin", problem) }
        if problems.count > 4 { report("unpin", "\(problems.count - 4) more entries of the same call were wrong") }
        if !returned.isEmpty { machine.unpin(returned, dirty: dirty) }
    }

    /// free_page_table_page: the page must be one this instance holds.
    func freePageTablePage(_ pfn: UInt64) {
        guard pfn < zeroFrame else { return report("free_page_table_page", "pfn#\(pfn) is not a frame of this machine") }
        let frame = Int32(truncatingIfNeeded: pfn)
        let problem: String? = ledger.withLock { ledger in
            if ledger.pageTablePages.removeValue(forKey: frame) != nil {
                ledger.freedPageTablePages.insert(frame)
                return nil
            }
            if ledger.freedPageTablePages.contains(frame) { return "pfn#\(pfn) was freed already (a double free)" }
            return machine.memory.flags(of: frame).contains(.devicePageTable)
                ? "pfn#\(pfn) is not one of this instance's page-table pages"
                : "pfn#\(pfn) is not a page-table page (alloc_page_table_page did not give it)"
        }
        if let problem { return report("free_page_table_page", problem) }
        machine.freeDevicePageTablePage(PageFrameNumber(pfn))
    }
}
