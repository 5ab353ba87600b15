import CDevicePluginABI
public import LabSync
public import MMUNotifier
public import VirtualMemory

/// A failed call into a plugin: its status code and message.
public struct PluginCallError: Error, Sendable, Hashable, CustomStringConvertible {
    public let plugin: String
    public let operation: String
    public let status: Int32
    public let message: String
    public var description: String { "\(plugin): \(operation) failed with status \(status)" + (message.isEmpty ? "" : ": \(message)") }
}

/// One instance of a loaded plugin, working on one machine.
///
/// `attach`, `detach`, `access` and `statistics` may be called from any
/// thread (the plugin synchronises its own state); `destroy` only once no
/// other call is under way.
public final class PluginInstance: @unchecked Sendable {
    // @unchecked: `bindings` is guarded by its lock; `destroyed` is set
    // once, by `destroy`, which callers call last (documented above).
    public let plugin: LoadedPlugin
    let context: HostContext
    let instance: UnsafeMutableRawPointer?
    private let bindings: SpinLocked<[Binding]>
    private var destroyed = false

    /// One device window onto a range of an address space.
    public final class Binding: @unchecked Sendable, CustomStringConvertible {
        // @unchecked: the handle belongs to the plugin.
        public let addressSpace: AddressSpaceID
        public let start: UInt64
        public let length: UInt64
        public let deviceAddress: UInt64
        let handle: UnsafeMutableRawPointer?
        init(addressSpace: AddressSpaceID, start: UInt64, length: UInt64, deviceAddress: UInt64, handle: UnsafeMutableRawPointer?) {
            self.addressSpace = addressSpace
            self.start = start
            self.length = length
            self.deviceAddress = deviceAddress
            self.handle = handle
        }
        public var description: String {
            "device 0x\(String(deviceAddress, radix: 16)) -> \(addressSpace) [0x\(String(start, radix: 16)), +\(length))"
        }
    }

    private init(plugin: LoadedPlugin, context: HostContext, instance: UnsafeMutableRawPointer?) {
        self.plugin = plugin
        self.context = context
        self.instance = instance
        bindings = SpinLocked([], name: "\(plugin.name) bindings", domain: context.machine.sync)
    }

    /// Creates an instance of `plugin` on `machine`; what the plugin logs
    /// goes to `log`; `observer`, if given, is told how long each of its
    /// notifier callbacks takes.
    public static func create(
        _ plugin: LoadedPlugin, machine: Machine, options: String = "", log: ReportLog<PluginLogEntry>? = nil,
        observer: (any CallbackObserver)? = nil
    ) -> Result<PluginInstance, PluginLoadError> {
        let context = HostContext(
            machine: machine, pluginName: plugin.name, negotiatedMinor: plugin.minor, log: log ?? ReportLog(capacity: 1_000),
            observer: observer)
        var instance: UnsafeMutableRawPointer? = nil
        var error = mmulab_error()
        let status = options.withCString { plugin.descriptor.pointee.create!(context.table, $0, &instance, &error) }
        guard status == mmulab_status(MMULAB_OK) else {
            return .failure(.createFailed(path: plugin.path, status: status, message: message(of: error)))
        }
        return .success(PluginInstance(plugin: plugin, context: context, instance: instance))
    }

    /// The whole-space subscriptions the plugin holds now, as the notifier
    /// core sees them (each callback on these goes through the C ABI).
    public var subscribers: [any AddressSpaceSubscriber] { context.subscriptions.withLock { Array($0.values) } }

    /// What the plugin logged (broken rules at `.misbehaving`).
    public var log: ReportLog<PluginLogEntry> { context.log }

    /// The instance's identity as a device: what its subscriptions carry
    /// and its accesses are checked under (`MemoryViolation.issuer`).
    public var device: DeviceID { context.device }

    /// Whether the plugin provides the optional `migrate` operation.
    public var canMigrate: Bool { plugin.descriptor.pointee.migrate != nil }

    /// The capabilities the plugin declared (`MMULAB_CAP_*`).
    public var capabilities: UInt32 { plugin.capabilities }

    /// Maps `[start, start + length)` of `addressSpace` into the device at `deviceAddress`.
    public func attach(
        addressSpace: AddressSpaceID, start: UInt64, length: UInt64, deviceAddress: UInt64? = nil,
        write: Bool = true, pinned: Bool = false
    ) throws(PluginCallError) -> Binding {
        precondition(!destroyed, "attach on a destroyed plugin instance")
        var desc = mmulab_binding_desc(
            struct_size: UInt32(MemoryLayout<mmulab_binding_desc>.size),
            flags: (write ? UInt32(MMULAB_BINDING_WRITE) : 0) | (pinned ? UInt32(MMULAB_BINDING_PINNED) : 0),
            address_space: addressSpace.rawValue, start: start, length: length, device_address: deviceAddress ?? start)
        var handle: UnsafeMutableRawPointer? = nil
        var error = mmulab_error()
        let status = plugin.descriptor.pointee.attach!(instance, &desc, &handle, &error)
        guard status == mmulab_status(MMULAB_OK) else { throw callError("attach", status, error) }
        let binding = Binding(addressSpace: addressSpace, start: start, length: length, deviceAddress: desc.device_address, handle: handle)
        bindings.withLock { $0.append(binding) }
        return binding
    }

    public func detach(_ binding: Binding) {
        let known = bindings.withLock { list in
            guard let index = list.firstIndex(where: { $0 === binding }) else { return false }
            list.remove(at: index)
            return true
        }
        guard known else { return }
        plugin.descriptor.pointee.detach!(instance, binding.handle)
    }

    /// The device reads (or writes) `buffer.count` bytes at the start of the
    /// page at `deviceAddress`, through its own page table.
    /// `atomic` (with `write`): an atomic read-modify-write, passed as
    /// MMULAB_ACCESS_ATOMIC to an instance that negotiated ABI 1.5, as a
    /// plain write to an older one.
    public func access(
        _ binding: Binding, deviceAddress: UInt64, write: Bool, atomic: Bool = false, buffer: UnsafeMutableRawBufferPointer
    ) throws(PluginCallError) {
        var error = mmulab_error()
        var flags: UInt32 = write ? UInt32(MMULAB_ACCESS_WRITE) : 0
        if write && atomic && context.negotiatedMinor >= 5 { flags |= UInt32(MMULAB_ACCESS_ATOMIC) }
        let status = plugin.descriptor.pointee.access!(
            instance, binding.handle, deviceAddress, flags, buffer.baseAddress, UInt32(buffer.count), &error)
        guard status == mmulab_status(MMULAB_OK) else { throw callError("access", status, error) }
    }

    /// Faults a range into the device ahead of use, if the plugin can.
    public func prefetch(_ binding: Binding, deviceAddress: UInt64, length: UInt64) throws(PluginCallError) {
        guard let prefetch = plugin.descriptor.pointee.prefetch else {
            throw PluginCallError(plugin: plugin.name, operation: "prefetch", status: mmulab_status(MMULAB_ERR_NOT_SUPPORTED), message: "not provided")
        }
        var error = mmulab_error()
        let status = prefetch(instance, binding.handle, deviceAddress, length, &error)
        guard status == mmulab_status(MMULAB_OK) else { throw callError("prefetch", status, error) }
    }

    /// Moves a range of the binding to the device's memory (`toDevice`) or
    /// back, if the plugin can.
    public func migrate(_ binding: Binding, deviceAddress: UInt64, length: UInt64, toDevice: Bool) throws(PluginCallError) {
        guard let migrate = plugin.descriptor.pointee.migrate else {
            throw PluginCallError(plugin: plugin.name, operation: "migrate", status: mmulab_status(MMULAB_ERR_NOT_SUPPORTED), message: "not provided")
        }
        var error = mmulab_error()
        let status = migrate(instance, binding.handle, deviceAddress, length, toDevice, &error)
        guard status == mmulab_status(MMULAB_OK) else { throw callError("migrate", status, error) }
    }

    /// A device-specific command on a binding (ABI 1.2 `control`): the
    /// command numbers and the layout of `argument`, read and written in
    /// place, are the plugin's (the KVM plugin's dirty log, say).
    public func control(_ binding: Binding, command: UInt32, argument: UnsafeMutableRawBufferPointer) throws(PluginCallError) {
        guard let control = plugin.descriptor.pointee.control else {
            throw PluginCallError(plugin: plugin.name, operation: "control", status: mmulab_status(MMULAB_ERR_NOT_SUPPORTED), message: "not provided")
        }
        var error = mmulab_error()
        let status = control(instance, binding.handle, command, argument.baseAddress, UInt64(argument.count), &error)
        guard status == mmulab_status(MMULAB_OK) else { throw callError("control", status, error) }
    }

    /// The plugin's named counters.
    public func statistics() -> [(name: String, value: UInt64)] {
        guard let count = plugin.descriptor.pointee.stat_count, let get = plugin.descriptor.pointee.stat_get else { return [] }
        return (0..<count(instance)).compactMap { index in
            var name: UnsafePointer<CChar>? = nil
            var value: UInt64 = 0
            guard get(instance, index, &name, &value) == mmulab_status(MMULAB_OK), let name else { return nil }
            return (String(cString: name), value)
        }
    }

    /// Detaches every binding, then destroys the instance. Idempotent.
    public func destroy() {
        guard !destroyed else { return }
        destroyed = true
        for binding in bindings.withLock({ list in defer { list.removeAll() }; return list }).reversed() {
            plugin.descriptor.pointee.detach!(instance, binding.handle)
        }
        plugin.descriptor.pointee.destroy!(instance)
        let unjoined = context.threads.withLock { $0.count }
        if unjoined > 0 { context.misbehaving("destroy returned with \(unjoined) thread(s) from thread_create not joined") }
        context.bringDeviceMemoryHome()
    }

    /// Calls the plugin made into the host from threads the host did not
    /// make while the machine ran under a controlled scheduler (each makes
    /// the run irreproducible), one line per thread, naming the plugin.
    public var scheduleEscapes: [String] { context.scheduleEscapes }

    deinit { destroy() }

    private func callError(_ operation: String, _ status: mmulab_status, _ error: mmulab_error) -> PluginCallError {
        PluginCallError(plugin: plugin.name, operation: operation, status: status, message: message(of: error))
    }
}
