// Test and benchmark fixture: the Swift twin of CountingC, written with
// DevicePluginKit's whole-space subscription.
public import CDevicePluginABI
import DevicePluginKit
import Synchronization

final class Counter: SpaceSubscription, @unchecked Sendable {
    let starts = Atomic<UInt64>(0)
    let ends = Atomic<UInt64>(0)

    override func invalidateRangeStart(_ range: InvalidationRange) -> Bool {
        starts.add(1, ordering: .relaxed)
        return true
    }

    override func invalidateRangeEnd(_ range: InvalidationRange) {
        ends.add(1, ordering: .relaxed)
    }
}

final class CountingSwift: DevicePlugin {
    static let info = PluginInfo(name: "counting-swift", version: "1", summary: "counts whole-space starts and ends")
    let host: Host
    let counter = Counter()

    init(host: Host, options: String) throws(PluginError) { self.host = host }

    func attach(_ request: BindingRequest) throws(PluginError) -> AnyObject {
        try host.subscribe(addressSpace: request.addressSpace, counter)
        return counter
    }

    func detach(_ binding: AnyObject) {
        host.unsubscribe(counter)
    }

    func access(_ binding: AnyObject, deviceAddress: UInt64, write: Bool, buffer: UnsafeMutableRawBufferPointer) throws(PluginError) {
        throw PluginError(status: Int32(MMULAB_ERR_NOT_SUPPORTED), "counting plugins do no DMA")
    }

    var statistics: [(name: String, value: UInt64)] {
        [("starts", counter.starts.load(ordering: .relaxed)), ("ends", counter.ends.load(ordering: .relaxed))]
    }
}

@_cdecl("mmulab_device_plugin_v1")
public func countingPluginEntry(_ hostMinor: UInt16, _ negotiated: UnsafeMutablePointer<UInt16>?) -> UnsafePointer<mmulab_device_plugin>? {
    DevicePluginExport.entry(CountingSwift.self, hostMinor, negotiated)
}
