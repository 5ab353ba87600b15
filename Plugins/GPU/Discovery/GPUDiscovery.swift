// Package, not public: only `device(from:)` takes a libdrm type (a record, so
// this package's tests can build one by hand); the public API is Swift types.
package import CLibDRM

#if canImport(Glibc)
import Glibc
#endif

/// A GPU as libdrm describes it: what the GPU plugin reports in its info
/// and in `mmulab plugins inspect`.
public struct GPUDevice: Sendable, Hashable, CustomStringConvertible {
    /// "pci", "usb", "platform", "host1x" or "unknown".
    public var bus: String
    /// For PCI, domain:bus:device.function as `lspci -D` prints it.
    public var busAddress: String?
    public var vendorID: UInt16?
    public var deviceID: UInt16?
    public var renderNode: String?
    public var primaryNode: String?
    /// The kernel driver's name (`drmGetVersion`), when the node could be opened.
    public var driver: String?

    public init(
        bus: String, busAddress: String? = nil, vendorID: UInt16? = nil, deviceID: UInt16? = nil,
        renderNode: String? = nil, primaryNode: String? = nil, driver: String? = nil
    ) {
        self.bus = bus
        self.busAddress = busAddress
        self.vendorID = vendorID
        self.deviceID = deviceID
        self.renderNode = renderNode
        self.primaryNode = primaryNode
        self.driver = driver
    }

    public var description: String {
        var parts = [bus]
        if let busAddress { parts.append(busAddress) }
        if let vendorID, let deviceID {
            parts.append("[\(hex4(vendorID)):\(hex4(deviceID))]")
        }
        if let driver { parts.append("driver \(driver)") }
        if let renderNode { parts.append(renderNode) } else if let primaryNode { parts.append(primaryNode) }
        return parts.joined(separator: " ")
    }
}

/// What discovery found: devices, or why there are none (and so the
/// plugin runs its simulated GPU).
public enum GPUDiscoveryResult: Sendable, Hashable, CustomStringConvertible {
    case devices([GPUDevice])
    case none(reason: String)

    public var description: String {
        switch self {
        case .devices(let devices): devices.map(\.description).joined(separator: "; ")
        case .none(let reason): "no DRM device (\(reason)): running the simulated GPU"
        }
    }
}

public enum GPUDiscovery {
    /// Translates one libdrm device record into a `GPUDevice`. Pure: reads
    /// only the record (and what it points to), so it is tested with
    /// records built by hand.
    package static func device(from record: UnsafePointer<drmDevice>, driver: String?) -> GPUDevice {
        let r = record.pointee
        func node(_ kind: Int32) -> String? {
            guard r.available_nodes & (1 << kind) != 0, let nodes = r.nodes, let name = nodes[Int(kind)] else { return nil }
            return String(cString: name)
        }
        var device = GPUDevice(
            bus: busName(r.bustype), busAddress: nil, vendorID: nil, deviceID: nil,
            renderNode: node(DRM_NODE_RENDER), primaryNode: node(DRM_NODE_PRIMARY), driver: driver)
        if r.bustype == DRM_BUS_PCI {
            if let info = r.businfo.pci {
                let i = info.pointee
                device.busAddress = "\(hex4(i.domain)):\(hex2(i.bus)):\(hex2(i.dev)).\(i.func)"
            }
            if let info = r.deviceinfo.pci {
                device.vendorID = info.pointee.vendor_id
                device.deviceID = info.pointee.device_id
            }
        }
        return device
    }

    static func busName(_ bustype: Int32) -> String {
        switch bustype {
        case DRM_BUS_PCI: "pci"
        case DRM_BUS_USB: "usb"
        case DRM_BUS_PLATFORM: "platform"
        case DRM_BUS_HOST1X: "host1x"
        default: "unknown"
        }
    }

    /// Enumerates the machine's DRM devices with `drmGetDevices2`, naming
    /// each one's driver with `drmGetVersion` on its render (or primary) node.
    public static func enumerate(directory: String = "/dev/dri") -> GPUDiscoveryResult {
        guard access(directory, F_OK) == 0 else { return .none(reason: "\(directory) does not exist") }
        var records = [drmDevicePtr?](repeating: nil, count: 16)
        let count = drmGetDevices2(0, &records, Int32(records.count))
        guard count > 0 else { return .none(reason: count == 0 ? "drmGetDevices2 found nothing" : "drmGetDevices2 failed (\(count))") }
        defer { drmFreeDevices(&records, count) }
        var devices: [GPUDevice] = []
        for record in records.prefix(Int(count)).compactMap({ $0 }) {
            let partial = device(from: record, driver: nil)
            devices.append(device(from: record, driver: (partial.renderNode ?? partial.primaryNode).flatMap(driverName)))
        }
        return .devices(devices)
    }

    static func driverName(_ node: String) -> String? {
        let fd = open(node, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { return nil }
        defer { close(fd) }
        guard let version = drmGetVersion(fd) else { return nil }
        defer { drmFreeVersion(version) }
        return version.pointee.name.map { String(cString: $0) }
    }
}

func hex2(_ value: UInt8) -> String { pad(String(value, radix: 16), 2) }
func hex4(_ value: UInt16) -> String { pad(String(value, radix: 16), 4) }
func pad(_ text: String, _ width: Int) -> String { String(repeating: "0", count: max(0, width - text.count)) + text }
