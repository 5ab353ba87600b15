import CLibDRM
import GPUDeviceDiscovery
import Testing

#if canImport(Glibc)
import Glibc
#endif

@Suite("GPU device discovery through libdrm")
struct GPUDiscoveryTests {
    /// A PCI GPU record built by hand, as drmGetDevices2 would fill it.
    @Test func aPCIRecordTranslatesToItsBusAddressIDsAndNodes() {
        let primary = strdup("/dev/dri/card0")!
        let render = strdup("/dev/dri/renderD128")!
        defer {
            free(primary)
            free(render)
        }
        let nodes = UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>.allocate(capacity: Int(DRM_NODE_MAX))
        defer { nodes.deallocate() }
        nodes.initialize(repeating: nil, count: Int(DRM_NODE_MAX))
        nodes[Int(DRM_NODE_PRIMARY)] = primary
        nodes[Int(DRM_NODE_RENDER)] = render
        var bus = drmPciBusInfo(domain: 0, bus: 0x03, dev: 0x00, func: 0)
        var info = drmPciDeviceInfo(vendor_id: 0x1002, device_id: 0x73bf, subvendor_id: 0x1002, subdevice_id: 0x0e3a, revision_id: 0xc1)
        withUnsafeMutablePointer(to: &bus) { busInfo in
            withUnsafeMutablePointer(to: &info) { deviceInfo in
                var record = drmDevice()
                record.nodes = nodes
                record.available_nodes = (1 << DRM_NODE_PRIMARY) | (1 << DRM_NODE_RENDER)
                record.bustype = DRM_BUS_PCI
                record.businfo.pci = busInfo
                record.deviceinfo.pci = deviceInfo
                let device = GPUDiscovery.device(from: &record, driver: "amdgpu")
                #expect(device == GPUDevice(
                    bus: "pci", busAddress: "0000:03:00.0", vendorID: 0x1002, deviceID: 0x73bf,
                    renderNode: "/dev/dri/renderD128", primaryNode: "/dev/dri/card0", driver: "amdgpu"))
                #expect(device.description == "pci 0000:03:00.0 [1002:73bf] driver amdgpu /dev/dri/renderD128")
            }
        }
    }

    @Test func nodesThatAreNotAvailableAreNotReported() {
        let nodes = UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>.allocate(capacity: Int(DRM_NODE_MAX))
        defer { nodes.deallocate() }
        nodes.initialize(repeating: nil, count: Int(DRM_NODE_MAX))
        var record = drmDevice()
        record.nodes = nodes
        record.available_nodes = 0
        record.bustype = DRM_BUS_PLATFORM
        let device = GPUDiscovery.device(from: &record, driver: nil)
        #expect(device.bus == "platform")
        #expect(device.renderNode == nil && device.primaryNode == nil && device.busAddress == nil)
    }

    /// These machines have no /dev/dri: discovery says so, and the plugin
    /// will run its simulated GPU.
    @Test func withoutDRMDevicesDiscoverySaysWhy() {
        let empty = "/nonexistent-dri-\(getpid())"
        guard case .none(let reason) = GPUDiscovery.enumerate(directory: empty) else {
            Issue.record("a missing directory cannot yield devices")
            return
        }
        #expect(reason.contains(empty))
        #expect(GPUDiscovery.enumerate(directory: empty).description.contains("simulated GPU"))
        // The real directory: whatever is there, the result must be coherent.
        switch GPUDiscovery.enumerate() {
        case .devices(let devices): #expect(!devices.isEmpty)
        case .none(let reason): #expect(!reason.isEmpty)
        }
    }
}
