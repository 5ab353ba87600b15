// A minimal device plugin in Swift: the same test_hmm-style mirror as
// Examples/MirrorPluginC, written against DevicePluginKit. Copy it to start
// your own: a type conforming to `DevicePlugin` plus the export line at the
// bottom.
//
// Per binding, a page table with one entry per page (the translation from the
// primary and whether the device may write through it), an interval
// subscription over the binding, and the canonical fault loop:
//     seq = readBegin; fault the page; lock; if readRetry(seq) start over; install; unlock

public import CDevicePluginABI
import DevicePluginKit

final class MirrorBinding: IntervalSubscription, @unchecked Sendable {
    struct Entry {
        var pfn = PFN()
        var valid = false
        var writable = false
        var written = false
    }

    unowned let device: SwiftMirror
    let request: BindingRequest
    /// Guarded by `device.lock`.
    var pages: [Entry]

    init(device: SwiftMirror, request: BindingRequest) {
        self.device = device
        self.request = request
        pages = Array(repeating: Entry(), count: Int(request.length / 4096))
    }

    /// [range-dependent] The primary changed pages of this binding.
    override func invalidate(range: InvalidationRange, currentSeq: UInt64) -> Bool {
        if range.isBlockable {
            device.lock.lock()
        } else if !device.lock.tryLock() {
            device.counters[.refused].bump()  // non-blockable and busy: refuse, never wait
            return false
        }
        setSeq(currentSeq)
        let first = max(range.start, request.start)
        let end = min(range.end, request.start + request.length)
        var address = first
        while address < end {
            let index = Int((address - request.start) / 4096)
            if pages[index].written { device.host.setDirty(pages[index].pfn) }  // the dirty state transfers
            pages[index] = Entry()
            address += 4096
        }
        device.lock.unlock()
        device.counters[.invalidations].bump()
        return true
    }
}

final class SwiftMirror: DevicePlugin {
    static let info = PluginInfo(
        name: "mirror-swift", version: "1.0",
        summary: "A test_hmm-style mirror device in Swift with DevicePluginKit.",
        capabilities: UInt32(MMULAB_CAP_FAILS_NONBLOCKING))

    let host: Host
    let lock: HostLock  // a spin lock: DMA under it never sleeps
    let counters = PluginCounters<MirrorCounter>()

    init(host: Host, options: String) throws(PluginError) {
        self.host = host
        lock = host.makeLock("mirror-swift device", spin: true)
    }

    func attach(_ request: BindingRequest) throws(PluginError) -> AnyObject {
        guard request.length > 0, request.start % 4096 == 0, request.length % 4096 == 0 else {
            throw .invalid("a binding must be page aligned and not empty")
        }
        let binding = MirrorBinding(device: self, request: request)
        try host.insertInterval(addressSpace: request.addressSpace, start: request.start, length: request.length, binding)
        return binding
    }

    func detach(_ object: AnyObject) {
        let binding = object as! MirrorBinding
        host.removeInterval(binding)  // no callback runs after this
        for entry in binding.pages where entry.written { host.setDirty(entry.pfn) }
    }

    func access(_ object: AnyObject, deviceAddress: UInt64, write: Bool, buffer: UnsafeMutableRawBufferPointer) throws(PluginError) {
        let binding = object as! MirrorBinding
        let request = binding.request
        guard deviceAddress >= request.deviceAddress, deviceAddress < request.deviceAddress + request.length else {
            throw .fault("device address outside the binding")
        }
        guard !write || request.writable else { throw .fault("write to a read-only binding") }
        let index = Int((deviceAddress - request.deviceAddress) / 4096)
        let address = request.start + UInt64(index) * 4096
        for attempt in 0..<1_000 {
            let done = lock.withLock { () -> Bool in
                let entry = binding.pages[index]
                guard entry.valid, !write || entry.writable else { return false }
                if write {
                    host.dmaWrite(addressSpace: request.addressSpace, entry.pfn, from: UnsafeRawBufferPointer(buffer))
                    binding.pages[index].written = true
                    counters[.dmaWrites].bump()
                } else {
                    host.dmaRead(addressSpace: request.addressSpace, entry.pfn, into: buffer)
                    counters[.dmaReads].bump()
                }
                return true
            }
            if done { return }

            // The canonical fault loop.
            if attempt > 2 { host.sleep(nanoseconds: 20_000) }  // let an invalidation finish
            let seq = binding.readBegin()
            let pfn = try host.faultRange(addressSpace: request.addressSpace, start: address, length: 4096, write: write)[0]
            counters[.faults].bump()
            let installed = lock.withLock { () -> Bool in
                if binding.readRetry(seq) { return false }
                binding.pages[index] = MirrorBinding.Entry(pfn: pfn, valid: true, writable: pfn.isWritable, written: false)
                return true
            }
            if !installed { counters[.faultRetries].bump() }
        }
        throw .busy("could not fault the page in")
    }

    var statistics: [(name: String, value: UInt64)] { counters.all }
}

/// The device's counters (its `stats`), in the order they are listed.
enum MirrorCounter: Int, PluginCounterName {
    case faults, faultRetries, invalidations, refused, dmaReads, dmaWrites

    var label: String {
        switch self {
        case .faults: "faults"
        case .faultRetries: "fault retries"
        case .invalidations: "invalidations"
        case .refused: "refused non-blockable"
        case .dmaReads: "dma reads"
        case .dmaWrites: "dma writes"
        }
    }
}

// The one export line.
@_cdecl("mmulab_device_plugin_v1")
public func mirrorPluginEntry(_ hostMinor: UInt16, _ negotiated: UnsafeMutablePointer<UInt16>?) -> UnsafePointer<mmulab_device_plugin>? {
    DevicePluginExport.entry(SwiftMirror.self, hostMinor, negotiated)
}
