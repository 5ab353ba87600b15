// A deliberately broken device plugin: the Swift mirror of
// Examples/MirrorPluginSwift with one classic secondary-MMU bug switched on
// by its options, so you can watch `mmulab run` catch it. Never copy it.
//
//     bug=stale     the invalidate callback bumps the sequence but keeps its
//                   translations: the device goes on using frames the primary
//                   unmapped, freed and reused (seed 003, the "backwards"
//                   order). Caught as stale translation / use after free.
//     bug=sleep     sleeps inside a non-blockable invalidation (seeds 000,
//                   001). Caught as context violation.

public import DevicePluginKit
import Synchronization

final class BrokenBinding: IntervalSubscription, @unchecked Sendable {
    struct Entry {
        var pfn = PFN()
        var valid = false
        var writable = false
        var written = false
    }

    unowned let device: BrokenMirror
    let request: BindingRequest
    /// Guarded by `device.lock`.
    var pages: [Entry]

    init(device: BrokenMirror, request: BindingRequest) {
        self.device = device
        self.request = request
        pages = Array(repeating: Entry(), count: Int(request.length / 4096))
    }

    /// [range-dependent] Where the bugs live.
    override func invalidate(range: InvalidationRange, currentSeq: UInt64) -> Bool {
        if device.bug == .sleep && !range.isBlockable { device.host.sleep(nanoseconds: 10_000) }  // BUG: must not sleep here
        device.lock.lock()
        setSeq(currentSeq)
        if device.bug != .stale {  // BUG (stale): the translations stay
            let first = max(range.start, request.start)
            let end = min(range.end, request.start + request.length)
            var address = first
            while address < end {
                let index = Int((address - request.start) / 4096)
                if pages[index].written { device.host.setDirty(pages[index].pfn) }
                pages[index] = Entry()
                address += 4096
            }
        }
        device.lock.unlock()
        return true
    }
}

final class BrokenMirror: DevicePlugin {
    enum Bug: String { case stale, sleep }

    static let info = PluginInfo(
        name: "mirror-broken", version: "1.0",
        summary: "A mirror device with a deliberate bug (options: bug=stale|sleep), to show what mmulab catches.",
        capabilities: 0)

    let host: Host
    let bug: Bug
    let lock: HostLock

    init(host: Host, options: String) throws(PluginError) {
        self.host = host
        var bug = Bug.stale
        for pair in options.split(separator: ",") {
            let parts = pair.split(separator: "=", maxSplits: 1).map(String.init)
            guard parts.count == 2, parts[0] == "bug", let chosen = Bug(rawValue: parts[1]) else {
                throw .invalid("unknown option '\(pair)' (options: bug=stale|sleep)")
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
        let binding = BrokenBinding(device: self, request: request)
        try host.insertInterval(addressSpace: request.addressSpace, start: request.start, length: request.length, binding)
        return binding
    }

    func detach(_ object: AnyObject) {
        let binding = object as! BrokenBinding
        host.removeInterval(binding)
        for entry in binding.pages where entry.written { host.setDirty(entry.pfn) }
    }

    func access(_ object: AnyObject, deviceAddress: UInt64, write: Bool, buffer: UnsafeMutableRawBufferPointer) throws(PluginError) {
        let binding = object as! BrokenBinding
        let request = binding.request
        guard deviceAddress >= request.deviceAddress, deviceAddress < request.deviceAddress + request.length else {
            throw .fault("device address outside the binding")
        }
        guard !write || request.writable else { throw .fault("write to a read-only binding") }
        let index = Int((deviceAddress - request.deviceAddress) / 4096)
        for attempt in 0..<1_000 {
            let done = lock.withLock { () -> Bool in
                let entry = binding.pages[index]
                guard entry.valid, !write || entry.writable else { return false }
                if write {
                    host.dmaWrite(addressSpace: request.addressSpace, entry.pfn, from: UnsafeRawBufferPointer(buffer))
                    binding.pages[index].written = true
                } else {
                    host.dmaRead(addressSpace: request.addressSpace, entry.pfn, into: buffer)
                }
                return true
            }
            if done { return }
            if attempt > 2 { host.sleep(nanoseconds: 20_000) }
            let seq = binding.readBegin()
            let pfn = try host.faultRange(addressSpace: request.addressSpace, start: request.start + UInt64(index) * 4096, length: 4096, write: write)[0]
            lock.withLock {
                if !binding.readRetry(seq) { binding.pages[index] = BrokenBinding.Entry(pfn: pfn, valid: true, writable: pfn.isWritable) }
            }
        }
        throw .busy("could not fault the page in")
    }

    var statistics: [(name: String, value: UInt64)] { [] }
}

@_cdecl("mmulab_device_plugin_v1")
public func brokenMirrorEntry(_ hostMinor: UInt16, _ negotiated: UnsafeMutablePointer<UInt16>?) -> UnsafePointer<mmulab_device_plugin>? {
    DevicePluginExport.entry(BrokenMirror.self, hostMinor, negotiated)
}
