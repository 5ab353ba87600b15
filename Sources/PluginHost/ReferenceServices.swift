import CDevicePluginABI
import LabSync
import MMUNotifier
import VirtualMemory

/// Page references, ABI 1.6 (`page_get` / `page_put`; Linux: `get_page` /
/// `put_page`): a reference on a frame the instance holds in its ledger,
/// taken on the frame itself (`PhysicalMemory.tryGet`), so reclaim and
/// migration, which count a page's references, leave it where it is, and
/// the frame is not freed until the last one is put. Neither service
/// sleeps or takes a lock of the primary's.
enum ReferenceServices {
    static func install(into t: inout mmulab_host) {
        t.page_get = { ReferenceServices.pageGet($0, $1) }
        t.page_put = { ReferenceServices.pagePut($0, $1) }
    }

    /// [any-thread] `page_get`: a reference on a current translation's frame.
    static func pageGet(_ ctx: UnsafeMutableRawPointer?, _ pointer: UnsafePointer<mmulab_pfn>?) -> mmulab_status {
        guard let host = HostContext.from(ctx, "page_get") else { return mmulab_status(MMULAB_ERR_INVALID) }
        CallFrames.enterService(host, "page_get")
        defer { CallFrames.leave() }
        guard let pfn = host.checked(pointer, "page_get") else { return mmulab_status(MMULAB_ERR_INVALID) }
        guard !pfn.isDevicePrivate else {
            host.report("page_get", "\(DevicePage(rawValue: pfn.pfn)) is a device page: the host keeps device memory itself")
            return mmulab_status(MMULAB_ERR_INVALID)
        }
        if pfn.pfn == host.zeroFrame { return mmulab_status(MMULAB_OK) }  // never freed: nothing to hold
        let frame = Int32(truncatingIfNeeded: pfn.pfn)
        let memory = host.machine.memory
        // The frame may have been freed (and reused) since the translation
        // was taken: a reference only on the same generation. One taken on
        // a reused frame is given back at once (it was not the last: the
        // frame's new owner holds its own).
        guard memory.tryGet(frame) else { return host.staleReference(pfn) }
        guard memory.generation(of: frame) == pfn.generation else {
            memory.put(frame)
            return host.staleReference(pfn)
        }
        host.ledger.withLock { ledger in ledger.references[frame, default: [:]][pfn.generation, default: 0] += 1 }
        return mmulab_status(MMULAB_OK)
    }

    /// [any-thread] `page_put`: only a reference this instance holds.
    static func pagePut(_ ctx: UnsafeMutableRawPointer?, _ pointer: UnsafePointer<mmulab_pfn>?) {
        guard let host = HostContext.from(ctx, "page_put") else { return }
        CallFrames.enterService(host, "page_put")
        defer { CallFrames.leave() }
        guard let pfn = host.checked(pointer, "page_put") else { return }
        if pfn.pfn == host.zeroFrame && !pfn.isDevicePrivate { return }
        let frame = Int32(truncatingIfNeeded: pfn.pfn)
        guard !pfn.isDevicePrivate, host.ledger.withLock({ $0.takeReference(frame, generation: pfn.generation) }) else {
            return host.report("page_put", "pfn#\(pfn.pfn) generation \(pfn.generation) holds no reference of this instance (put already, or never taken)")
        }
        host.machine.memory.put(frame)
    }
}

extension HostContext {
    /// page_get of a frame freed since: reported as the use after free it is.
    fileprivate func staleReference(_ pfn: mmulab_pfn) -> mmulab_status {
        report("page_get", "pfn#\(pfn.pfn) generation \(pfn.generation) was freed since the translation was taken (a use after free)")
        return mmulab_status(MMULAB_ERR_FAULT)
    }

    /// The translation behind `pfn` for a DMA: with MMULAB_PFN_REFERENCED
    /// only if the instance holds a reference on it (else reported, and the
    /// flag ignored).
    @inline(__always)
    func referencedTranslation(_ pfn: mmulab_pfn, _ service: StaticString) -> DeviceTranslation {
        let t = translation(pfn)
        guard pfn.flags & UInt32(MMULAB_PFN_REFERENCED) != 0 else { return t }
        // The zero page: page_get takes nothing on it (it is never freed), so
        // the flag holds nothing either, and the access is judged as any.
        if pfn.pfn == zeroFrame && !pfn.isDevicePrivate { return t }
        let frame = Int32(truncatingIfNeeded: pfn.pfn)
        guard !pfn.isDevicePrivate, ledger.withLock({ $0.holdsReference(frame, generation: pfn.generation) }) else {
            report("\(service)", "MMULAB_PFN_REFERENCED on pfn#\(pfn.pfn) generation \(pfn.generation), which holds no reference of this instance")
            return t
        }
        return DeviceTranslation(
            address: t.address, frame: t.frame, generation: t.generation, writable: t.writable, pinned: t.pinned, devicePage: t.devicePage,
            exclusive: t.exclusive, huge: t.huge, referenced: true)
    }

    /// References left at destroy: reported, then put by the host.
    func putLeftoverReferences() {
        let left = ledger.withLock { ledger in defer { ledger.references = [:] }; return ledger.references }
        guard !left.isEmpty else { return }
        let count = left.values.reduce(0) { $0 + $1.values.reduce(0, +) }
        report(
            "destroy", "\(count) page references (\(left.keys.sorted().prefix(4).map { "pfn#\($0)" }.joined(separator: ", "))) were still held after destroy returned (put by the host)",
            kind: .leak, summary: "page reference left after destroy")
        for (frame, generations) in left.sorted(by: { $0.key < $1.key }) {
            for (_, count) in generations { for _ in 0..<count { machine.memory.put(frame) } }
        }
    }
}
