public import CDevicePluginABI

#if canImport(Glibc)
import Glibc
#endif

/// The optional operations a plugin provides.
public struct PluginOperations: OptionSet, Sendable {
    public let rawValue: UInt32
    public init(rawValue: UInt32) { self.rawValue = rawValue }
    /// `prefetch`: fault a range in ahead of use.
    public static let prefetch = PluginOperations(rawValue: 1 << 0)
    /// `migrate`: move a range to device memory and back.
    public static let migrate = PluginOperations(rawValue: 1 << 1)
    /// `control`: device-specific commands on a binding (ABI 1.2).
    public static let control = PluginOperations(rawValue: 1 << 2)
    /// `migrate_to_ram`: a CPU fault on a page of the instance's device
    /// memory asks the plugin to bring it home first (ABI 1.6).
    public static let migrateToRAM = PluginOperations(rawValue: 1 << 3)
}

/// What a plugin declares about itself.
public struct PluginInfo: Sendable {
    public var name: String
    public var version: String
    public var summary: String
    /// `MMULAB_CAP_*` bits its subscriptions declare.
    public var capabilities: UInt32
    /// Which optional operations it implements (the others stay NULL).
    public var operations: PluginOperations

    public init(name: String, version: String, summary: String, capabilities: UInt32 = 0, operations: PluginOperations = []) {
        self.name = name
        self.version = version
        self.summary = summary
        self.capabilities = capabilities
        self.operations = operations
    }
}

/// What the host asks `attach` to map.
public struct BindingRequest: Sendable {
    public let addressSpace: UInt64
    public let start: UInt64
    public let length: UInt64
    public let deviceAddress: UInt64
    public let writable: Bool
    public let pinned: Bool
}

/// A device plugin written in Swift: a type conforming to this protocol plus
/// one export line (see `DevicePluginExport`). The kit turns the C tables
/// into these calls; contexts are those of the C header.
///
/// `attach`, `detach` and `access` are [any-thread] (ABI 1.2 on): the host
/// calls them concurrently with each other and with the device's own
/// threads (the lab's attach-churn and exit-release actors do), so the
/// plugin synchronises its own state, with the host's locks.
public protocol DevicePlugin: AnyObject {
    static var info: PluginInfo { get }
    /// [blockable] `create`.
    init(host: Host, options: String) throws(PluginError)
    /// [blockable] [any-thread] Map a window; return the object that stands
    /// for it. May run concurrently with `access`, `detach` and other
    /// attaches on the same instance.
    func attach(_ request: BindingRequest) throws(PluginError) -> AnyObject
    /// [blockable] [any-thread] Unmap a window; no callback for it may run
    /// after this returns. May run concurrently with `access` and `attach`
    /// on other bindings. Also called for a binding whose address space
    /// has exited (after release): it must then only free what is left.
    func detach(_ binding: AnyObject)
    /// [blockable] [any-thread] The device reads or writes the page at
    /// `deviceAddress`, faulting the translation in if needed.
    func access(_ binding: AnyObject, deviceAddress: UInt64, write: Bool, buffer: UnsafeMutableRawBufferPointer) throws(PluginError)
    /// [blockable] An atomic read-modify-write of the page at
    /// `deviceAddress` that writes `buffer` (ABI 1.5, MMULAB_ACCESS_ATOMIC):
    /// take the page exclusive first (`Host.makeExclusive`). By default a
    /// plain write.
    func atomic(_ binding: AnyObject, deviceAddress: UInt64, buffer: UnsafeMutableRawBufferPointer) throws(PluginError)
    /// [blockable] Fault a range in ahead of use (declare `.prefetch`).
    func prefetch(_ binding: AnyObject, deviceAddress: UInt64, length: UInt64) throws(PluginError)
    /// [blockable] Move a range to device memory or back (declare `.migrate`).
    func migrate(_ binding: AnyObject, deviceAddress: UInt64, length: UInt64, toDevice: Bool) throws(PluginError)
    /// [blockable] A device-specific command on a binding; `argument` is
    /// read and written in place (declare `.control`).
    func control(_ binding: AnyObject, command: UInt32, argument: UnsafeMutableRawBufferPointer) throws(PluginError)
    /// [blockable] A CPU access reached the page at `address` of
    /// `addressSpace`, which is in this instance's device memory (ABI 1.6,
    /// declare `.migrateToRAM`): drop your translations of it and bring it
    /// home with `migrate_to_host`. Runs with the primary's mmap lock held
    /// shared; whatever is left in device memory the host brings home.
    func migrateToRAM(addressSpace: UInt64, address: UInt64) throws(PluginError)
    /// [any-thread] Named counters.
    var statistics: [(name: String, value: UInt64)] { get }
    /// [blockable] Called before the instance goes away (after every detach).
    func shutdown()
}

extension DevicePlugin {
    public func atomic(_ binding: AnyObject, deviceAddress: UInt64, buffer: UnsafeMutableRawBufferPointer) throws(PluginError) {
        try access(binding, deviceAddress: deviceAddress, write: true, buffer: buffer)
    }
    public func prefetch(_ binding: AnyObject, deviceAddress: UInt64, length: UInt64) throws(PluginError) {
        throw PluginError(status: Int32(MMULAB_ERR_NOT_SUPPORTED), "prefetch is not provided")
    }
    public func migrate(_ binding: AnyObject, deviceAddress: UInt64, length: UInt64, toDevice: Bool) throws(PluginError) {
        throw PluginError(status: Int32(MMULAB_ERR_NOT_SUPPORTED), "migrate is not provided")
    }
    public func control(_ binding: AnyObject, command: UInt32, argument: UnsafeMutableRawBufferPointer) throws(PluginError) {
        throw PluginError(status: Int32(MMULAB_ERR_NOT_SUPPORTED), "control is not provided")
    }
    public func migrateToRAM(addressSpace: UInt64, address: UInt64) throws(PluginError) {
        throw PluginError(status: Int32(MMULAB_ERR_NOT_SUPPORTED), "migrate_to_ram is not provided")
    }
    public var statistics: [(name: String, value: UInt64)] { [] }
    public func shutdown() {}
}

/// Exports a `DevicePlugin` type through the C ABI. The plugin's one
/// export line (its file imports `CDevicePluginABI` for the descriptor's
/// type, which the kit does not re-export):
///
///     public import CDevicePluginABI
///     import DevicePluginKit
///
///     @_cdecl("mmulab_device_plugin_v1")
///     public func entry(_ hostMinor: UInt16, _ negotiated: UnsafeMutablePointer<UInt16>?)
///         -> UnsafePointer<mmulab_device_plugin>? { DevicePluginExport.entry(MyPlugin.self, hostMinor, negotiated) }
///
/// A shared object exports one plugin type; the kit keeps it in a
/// per-image slot that the C thunks read.
public enum DevicePluginExport {
    nonisolated(unsafe) static var factory: ((Host, String) throws(PluginError) -> any DevicePlugin)?
    nonisolated(unsafe) static var descriptor: UnsafeMutablePointer<mmulab_device_plugin>?

    public static func entry<P: DevicePlugin>(
        _ type: P.Type, _ hostMinor: UInt16, _ negotiated: UnsafeMutablePointer<UInt16>?
    ) -> UnsafePointer<mmulab_device_plugin>? {
        negotiated?.pointee = min(hostMinor, UInt16(MMULAB_ABI_MINOR))
        if let descriptor { return UnsafePointer(descriptor) }
        factory = { host, options throws(PluginError) in try P(host: host, options: options) }
        let info = P.info
        let made = UnsafeMutablePointer<mmulab_device_plugin>.allocate(capacity: 1)
        made.initialize(to: mmulab_device_plugin(
            struct_size: UInt32(MemoryLayout<mmulab_device_plugin>.size),
            abi_major: UInt16(MMULAB_ABI_MAJOR), abi_minor: UInt16(MMULAB_ABI_MINOR),
            name: UnsafePointer(strdup(info.name)), version: UnsafePointer(strdup(info.version)),
            description: UnsafePointer(strdup(info.summary)), capabilities: info.capabilities, reserved: 0,
            create: create, destroy: destroy, attach: attach, detach: detach, access: access,
            prefetch: info.operations.contains(.prefetch) ? prefetch : nil,
            migrate: info.operations.contains(.migrate) ? migrate : nil, stat_count: statCount, stat_get: statGet,
            control: info.operations.contains(.control) ? control : nil,
            migrate_to_ram: info.operations.contains(.migrateToRAM) ? migrateToRAM : nil))
        descriptor = made
        return UnsafePointer(made)
    }

    /// One instance: the plugin object and the C strings of its counter names.
    final class InstanceBox {
        let plugin: any DevicePlugin
        var names: [String: UnsafeMutablePointer<CChar>] = [:]
        init(plugin: any DevicePlugin) { self.plugin = plugin }
        deinit { for name in names.values { free(name) } }
        static func from(_ instance: UnsafeMutableRawPointer?) -> InstanceBox {
            Unmanaged<InstanceBox>.fromOpaque(instance!).takeUnretainedValue()
        }
    }

    static let create: @convention(c) (
        UnsafePointer<mmulab_host>?, UnsafePointer<CChar>?, UnsafeMutablePointer<UnsafeMutableRawPointer?>?,
        UnsafeMutablePointer<mmulab_error>?
    ) -> mmulab_status = { host, options, instance, errorOut in
        guard let host, let factory else { return PluginError.invalid("no host table").report(into: errorOut) }
        do throws(PluginError) {
            let plugin = try factory(Host(host), options.map { String(cString: $0) } ?? "")
            instance?.pointee = Unmanaged.passRetained(InstanceBox(plugin: plugin)).toOpaque()
            return mmulab_status(MMULAB_OK)
        } catch {
            return error.report(into: errorOut)
        }
    }

    static let destroy: @convention(c) (UnsafeMutableRawPointer?) -> Void = { instance in
        let box = Unmanaged<InstanceBox>.fromOpaque(instance!).takeRetainedValue()
        box.plugin.shutdown()
    }

    static let attach: @convention(c) (
        UnsafeMutableRawPointer?, UnsafePointer<mmulab_binding_desc>?, UnsafeMutablePointer<UnsafeMutableRawPointer?>?,
        UnsafeMutablePointer<mmulab_error>?
    ) -> mmulab_status = { instance, desc, binding, errorOut in
        guard let desc else { return PluginError.invalid("no binding description").report(into: errorOut) }
        let d = desc.pointee
        let request = BindingRequest(
            addressSpace: d.address_space, start: d.start, length: d.length, deviceAddress: d.device_address,
            writable: d.flags & UInt32(MMULAB_BINDING_WRITE) != 0, pinned: d.flags & UInt32(MMULAB_BINDING_PINNED) != 0)
        do throws(PluginError) {
            let object = try InstanceBox.from(instance).plugin.attach(request)
            binding?.pointee = Unmanaged.passRetained(object).toOpaque()
            return mmulab_status(MMULAB_OK)
        } catch {
            return error.report(into: errorOut)
        }
    }

    static let detach: @convention(c) (UnsafeMutableRawPointer?, UnsafeMutableRawPointer?) -> Void = { instance, binding in
        let object = Unmanaged<AnyObject>.fromOpaque(binding!).takeRetainedValue()
        InstanceBox.from(instance).plugin.detach(object)
    }

    static let access: @convention(c) (
        UnsafeMutableRawPointer?, UnsafeMutableRawPointer?, UInt64, UInt32, UnsafeMutableRawPointer?, UInt32,
        UnsafeMutablePointer<mmulab_error>?
    ) -> mmulab_status = { instance, binding, address, flags, buffer, length, errorOut in
        let object = Unmanaged<AnyObject>.fromOpaque(binding!).takeUnretainedValue()
        let bytes = UnsafeMutableRawBufferPointer(start: buffer, count: Int(length))
        let write = flags & UInt32(MMULAB_ACCESS_WRITE) != 0
        do throws(PluginError) {
            let plugin = InstanceBox.from(instance).plugin
            if write && flags & UInt32(MMULAB_ACCESS_ATOMIC) != 0 {
                try plugin.atomic(object, deviceAddress: address, buffer: bytes)
            } else {
                try plugin.access(object, deviceAddress: address, write: write, buffer: bytes)
            }
            return mmulab_status(MMULAB_OK)
        } catch {
            return error.report(into: errorOut)
        }
    }

    static let prefetch: @convention(c) (
        UnsafeMutableRawPointer?, UnsafeMutableRawPointer?, UInt64, UInt64, UnsafeMutablePointer<mmulab_error>?
    ) -> mmulab_status = { instance, binding, address, length, errorOut in
        let object = Unmanaged<AnyObject>.fromOpaque(binding!).takeUnretainedValue()
        do throws(PluginError) {
            try InstanceBox.from(instance).plugin.prefetch(object, deviceAddress: address, length: length)
            return mmulab_status(MMULAB_OK)
        } catch {
            return error.report(into: errorOut)
        }
    }

    static let migrate: @convention(c) (
        UnsafeMutableRawPointer?, UnsafeMutableRawPointer?, UInt64, UInt64, Bool, UnsafeMutablePointer<mmulab_error>?
    ) -> mmulab_status = { instance, binding, address, length, toDevice, errorOut in
        let object = Unmanaged<AnyObject>.fromOpaque(binding!).takeUnretainedValue()
        do throws(PluginError) {
            try InstanceBox.from(instance).plugin.migrate(object, deviceAddress: address, length: length, toDevice: toDevice)
            return mmulab_status(MMULAB_OK)
        } catch {
            return error.report(into: errorOut)
        }
    }

    static let control: @convention(c) (
        UnsafeMutableRawPointer?, UnsafeMutableRawPointer?, UInt32, UnsafeMutableRawPointer?, UInt64,
        UnsafeMutablePointer<mmulab_error>?
    ) -> mmulab_status = { instance, binding, command, argument, size, errorOut in
        let object = Unmanaged<AnyObject>.fromOpaque(binding!).takeUnretainedValue()
        do throws(PluginError) {
            try InstanceBox.from(instance).plugin.control(
                object, command: command, argument: UnsafeMutableRawBufferPointer(start: argument, count: Int(size)))
            return mmulab_status(MMULAB_OK)
        } catch {
            return error.report(into: errorOut)
        }
    }

    static let migrateToRAM: @convention(c) (UnsafeMutableRawPointer?, UInt64, UInt64, UnsafeMutablePointer<mmulab_error>?) -> mmulab_status = {
        instance, addressSpace, address, errorOut in
        do throws(PluginError) {
            try InstanceBox.from(instance).plugin.migrateToRAM(addressSpace: addressSpace, address: address)
            return mmulab_status(MMULAB_OK)
        } catch {
            return error.report(into: errorOut)
        }
    }

    static let statCount: @convention(c) (UnsafeMutableRawPointer?) -> UInt32 = { instance in
        UInt32(InstanceBox.from(instance).plugin.statistics.count)
    }

    static let statGet: @convention(c) (
        UnsafeMutableRawPointer?, UInt32, UnsafeMutablePointer<UnsafePointer<CChar>?>?, UnsafeMutablePointer<UInt64>?
    ) -> mmulab_status = { instance, index, name, value in
        let box = InstanceBox.from(instance)
        let stats = box.plugin.statistics
        guard Int(index) < stats.count else { return mmulab_status(MMULAB_ERR_INVALID) }
        let stat = stats[Int(index)]
        let cName = box.names[stat.name] ?? {
            let made = strdup(stat.name)!
            box.names[stat.name] = made
            return made
        }()
        name?.pointee = UnsafePointer(cName)
        value?.pointee = stat.value
        return mmulab_status(MMULAB_OK)
    }
}
