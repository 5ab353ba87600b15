// The RDMA plugin: a simulated NIC with on-demand paging in the shape of
// mlx5 ODP, loaded by mmulab through the plugin ABI.
//
//   MemoryRegion    regions, access flags and the key table remote peers use
//   ODPRegion       explicit and implicit on-demand-paging regions
//   UmemODP         a translation table with its interval notifier: the
//                   canonical fault loop and mlx5's invalidation policy
//   PinnedRegion    registration without ODP: pinned, no notifier
//   DMAEngine       DMA transfers taking simulated time on their own threads
//
// A binding is a memory region. `pinned` bindings pin; the others page on
// demand; a binding of the whole user address space (start 0, length
// 2^47) is an implicit ODP region. The device address of a binding is its
// iova; `access` is a remote READ or WRITE at an iova, found by key.

public import CDevicePluginABI
import DevicePluginKit
import Synchronization

final class NIC: DevicePlugin {
    struct Configuration {
        /// Simulated time each DMA transfer takes on an engine (0: none, and
        /// the posting thread does the copy itself).
        var dmaMicroseconds: UInt64 = 0
        var dmaEngines = 2
        /// Pages a page fault resolves at once, around the faulting one.
        var faultPages: UInt64 = 16
        /// Pages of each child of an implicit region.
        var implicitChunkPages: UInt64 = 256

        init(parsing options: String) throws(PluginError) {
            let given = try PluginOptions(
                options, keys: ["dma-us": 0...10_000_000, "dma-engines": 1...64, "fault-pages": 1...512, "implicit-chunk": 1...262_144])
            dmaMicroseconds = UInt64(given["dma-us", default: Int(dmaMicroseconds)])
            dmaEngines = given["dma-engines", default: dmaEngines]
            faultPages = UInt64(given["fault-pages", default: Int(faultPages)])
            implicitChunkPages = UInt64(given["implicit-chunk", default: Int(implicitChunkPages)])
            guard faultPages & (faultPages - 1) == 0, implicitChunkPages & (implicitChunkPages - 1) == 0 else {
                throw .invalid("option fault-pages and implicit-chunk must be powers of two")
            }
        }
    }

    static var info: PluginInfo {
        PluginInfo(
            name: "rdma", version: "1.0",
            summary: "Simulated RDMA NIC (mlx5 ODP style): on-demand-paging and implicit memory regions, pinned regions, "
                + "remote READ/WRITE by key, DMA in flight drained by invalidations, prefetch (ibv_advise_mr). "
                + "Options: dma-us, dma-engines, fault-pages, implicit-chunk.",
            capabilities: UInt32(MMULAB_CAP_FAILS_NONBLOCKING), operations: [.prefetch])
    }

    let host: Host
    let configuration: Configuration
    let counters = RDMACounters()
    let keys: KeyTable
    private let engine: DMAEngine?

    init(host: Host, options: String) throws(PluginError) {
        self.host = host
        configuration = try Configuration(parsing: options)
        keys = KeyTable(host: host)
        engine = configuration.dmaMicroseconds > 0
            ? try DMAEngine(host: host, engines: configuration.dmaEngines, latencyNanoseconds: configuration.dmaMicroseconds * 1_000) : nil
    }

    // MARK: - Registration

    func attach(_ request: BindingRequest) throws(PluginError) -> AnyObject {
        guard request.length > 0, request.start % 4096 == 0, request.length % 4096 == 0, request.deviceAddress % 4096 == 0 else {
            throw .invalid("a memory region must be page aligned and not empty")
        }
        var access: AccessFlags = [.remoteRead]
        if request.writable { access.formUnion([.localWrite, .remoteWrite]) }
        if !request.pinned { access.insert(.onDemand) }
        let region: MemoryRegion
        if request.start == 0 && request.length == ImplicitODPRegion.span {
            guard !request.pinned else { throw .invalid("the whole address space cannot be pinned: implicit regions are ODP only") }
            guard request.deviceAddress == 0 else { throw .invalid("an implicit region's iova is its virtual address: device address must be 0") }
            region = ImplicitODPRegion(nic: self, addressSpace: request.addressSpace, access: access)
        } else {
            guard request.length <= ImplicitODPRegion.span, request.start <= ImplicitODPRegion.span - request.length else {
                throw .invalid("a memory region must lie below 2^47")
            }
            let asked = MemoryRegion.Request(
                addressSpace: request.addressSpace, start: request.start, end: request.start + request.length,
                iova: request.deviceAddress, access: access)
            region = request.pinned ? try PinnedRegion(nic: self, registering: asked) : try ODPRegion(nic: self, registering: asked)
        }
        do {
            try keys.register(region)
        } catch {
            region.release()
            throw error
        }
        host.log(.debug, "registered region key 0x\(String(region.key, radix: 16)) [\(region.access)]")
        return region
    }

    /// Deregistration (`ibv_dereg_mr`): the key goes first, so no new remote
    /// operation finds the region; then the ones in progress finish; then
    /// the region lets go of its pages.
    func detach(_ object: AnyObject) {
        let region = object as! MemoryRegion
        keys.remove(region.key)
        while region.users.load(ordering: .acquiring) > 0 { host.sleep(nanoseconds: 10_000) }
        region.release()
    }

    func shutdown() { engine?.stop() }

    // MARK: - Remote operations

    func access(_ object: AnyObject, deviceAddress: UInt64, write: Bool, buffer: UnsafeMutableRawBufferPointer) throws(PluginError) {
        let binding = object as! MemoryRegion
        guard let region = keys.acquire(binding.key) else {
            counters[.remoteAccessErrors].bump()
            throw .fault("remote access error: key 0x\(String(binding.key, radix: 16)) is not registered")
        }
        defer { region.users.subtract(1, ordering: .releasing) }
        guard deviceAddress >= region.iova, deviceAddress - region.iova < region.end - region.start else {
            counters[.remoteAccessErrors].bump()
            throw .fault("remote access error: iova 0x\(String(deviceAddress, radix: 16)) is outside the region")
        }
        guard !write || region.access.contains(.remoteWrite) else {
            counters[.remoteAccessErrors].bump()
            throw .fault("remote access error: RDMA WRITE to a region without REMOTE_WRITE")
        }
        let address = (region.start + (deviceAddress - region.iova)) & ~4095
        do {
            try region.transfer(address, write: write, buffer)
        } catch {
            counters[.remoteAccessErrors].bump()
            throw error
        }
        if write { counters[.remoteWrites].bump() } else { counters[.remoteReads].bump() }
    }

    /// `ibv_advise_mr(IBV_ADVISE_MR_ADVICE_PREFETCH_WRITE)`: faults the range
    /// in ahead of the remote operations that will use it. Like a remote
    /// operation it holds the region through its key, so a deregistration
    /// waits for it.
    func prefetch(_ object: AnyObject, deviceAddress: UInt64, length: UInt64) throws(PluginError) {
        let binding = object as! MemoryRegion
        guard let region = keys.acquire(binding.key) else { throw .invalid("prefetch: the region is not registered") }
        defer { region.users.subtract(1, ordering: .releasing) }
        let size = region.end - region.start
        guard deviceAddress % 4096 == 0, length > 0, length % 4096 == 0, deviceAddress >= region.iova,
            deviceAddress - region.iova <= size, length <= size - (deviceAddress - region.iova)
        else { throw .invalid("prefetch range must be page aligned and inside the region") }
        let first = region.start + (deviceAddress - region.iova)
        try region.prefetch(first, first + length)
        counters[.prefetches].bump()
    }

    /// Carries out one DMA transfer through `pfn`, on an engine if the NIC
    /// has them (the caller counts it in flight around this call).
    func dma(_ addressSpace: UInt64, _ pfn: PFN, write: Bool, _ buffer: UnsafeMutableRawBufferPointer) {
        counters[.dmaInFlight].bump()
        defer { counters[.dmaInFlight].drop() }
        if let engine {
            engine.perform(addressSpace: addressSpace, pfn: pfn, write: write, buffer: buffer)
        } else {
            DMAEngine.copy(host, addressSpace, pfn, write: write, buffer)
        }
    }

    var statistics: [(name: String, value: UInt64)] { counters.all }
}

// The one export line.
@_cdecl("mmulab_device_plugin_v1")
public func rdmaPluginEntry(_ hostMinor: UInt16, _ negotiated: UnsafeMutablePointer<UInt16>?) -> UnsafePointer<mmulab_device_plugin>? {
    DevicePluginExport.entry(NIC.self, hostMinor, negotiated)
}
