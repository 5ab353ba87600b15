import CDevicePluginABI
import CPluginOops
public import LabSync
public import MMUNotifier
import Synchronization
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
///
/// Every call into the plugin runs in a frame of the thread's call stack
/// (`CallFrames`: what the oops prints and what attributes a misuse to a
/// binding). When `detach` returns, the binding's intervals and pins must be
/// gone, and when `destroy` returns, everything the instance held: what is
/// left is reported (`violations`) and undone by the host.
public final class PluginInstance: @unchecked Sendable {
    // @unchecked: `bindings` is guarded by its lock; `destroyed` is set
    // once, by `destroy`, which callers call last (documented above).
    public let plugin: LoadedPlugin
    let context: HostContext
    let instance: UnsafeMutableRawPointer?
    private let bindings: SpinLocked<[Binding]>
    private let nextBinding = Atomic<UInt64>(1)
    private var destroyed = false

    /// One device window onto a range of an address space.
    public final class Binding: @unchecked Sendable, CustomStringConvertible {
        // @unchecked: the handle belongs to the plugin.
        public let addressSpace: AddressSpaceID
        public let start: UInt64
        public let length: UInt64
        public let deviceAddress: UInt64
        /// Its number in the instance (from 1), as reports name it (`#3`).
        public let number: UInt64
        let handle: UnsafeMutableRawPointer?
        init(addressSpace: AddressSpaceID, start: UInt64, length: UInt64, deviceAddress: UInt64, number: UInt64, handle: UnsafeMutableRawPointer?) {
            self.addressSpace = addressSpace
            self.start = start
            self.length = length
            self.deviceAddress = deviceAddress
            self.number = number
            self.handle = handle
        }
        public var description: String {
            "#\(number): device 0x\(String(deviceAddress, radix: 16)) -> \(addressSpace) [0x\(String(start, radix: 16)), +\(length))"
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
    /// notifier callbacks takes; `label` is how reports name the instance
    /// (`gpu#0`; the plugin's name by default).
    public static func create(
        _ plugin: LoadedPlugin, machine: Machine, options: String = "", log: ReportLog<PluginLogEntry>? = nil,
        observer: (any CallbackObserver)? = nil, label: String? = nil
    ) -> Result<PluginInstance, PluginLoadError> {
        let context = HostContext(machine: machine, plugin: plugin, label: label, log: log ?? ReportLog(capacity: 1_000), observer: observer)
        var instance: UnsafeMutableRawPointer? = nil
        var error = mmulab_error()
        let status = callPlugin(context, "create") {
            options.withCString { plugin.descriptor.pointee.create!(context.table, $0, &instance, &error) }
        }
        guard status == mmulab_status(MMULAB_OK) else {
            return .failure(.createFailed(path: plugin.path, status: status, message: message(of: error)))
        }
        // From here a CPU fault on its device memory may call migrate_to_ram (1.6).
        context.liveInstance.store(UInt(bitPattern: instance), ordering: .releasing)
        return .success(PluginInstance(plugin: plugin, context: context, instance: instance))
    }

    /// The whole-space subscriptions the plugin holds now, as the notifier
    /// core sees them (each callback on these goes through the C ABI).
    public var subscribers: [any AddressSpaceSubscriber] { context.subscribers }

    /// What the plugin logged (broken rules at `.misbehaving`).
    public var log: ReportLog<PluginLogEntry> { context.log }

    /// What the plugin did wrong at the boundary: misused services, things
    /// left behind, locks held at return (each undone or refused by the host).
    public var violations: ReportLog<PluginContractViolation> { context.violations }

    /// The instance's identity as a device: what its subscriptions carry
    /// and its accesses are checked under (`MemoryViolation.issuer`).
    public var device: DeviceID { context.device }

    /// Whether the plugin provides the optional `migrate` operation.
    public var canMigrate: Bool { plugin.descriptor.pointee.migrate != nil }

    /// The capabilities the plugin declared (`MMULAB_CAP_*`).
    public var capabilities: UInt32 { plugin.capabilities }

    /// Calls the plugin's `operation` on `binding` in a frame naming both.
    @inline(__always)
    private func call<Result>(_ operation: StaticString, _ binding: Binding?, _ body: () -> Result) -> Result {
        callPlugin(context, operation, describe: { frame in
            guard let binding else { return }
            frame.pointee.binding = binding.number
            frame.pointee.subject = UInt32(MMULAB_OOPS_SUBJECT_BINDING.rawValue)
            frame.pointee.a = binding.addressSpace.rawValue
            frame.pointee.b = binding.start
            frame.pointee.c = binding.length
            frame.pointee.d = binding.deviceAddress
        }, body)
    }

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
        // Numbered before the call: what attach makes belongs to the binding.
        let binding = Binding(
            addressSpace: addressSpace, start: start, length: length, deviceAddress: desc.device_address,
            number: nextBinding.add(1, ordering: .relaxed).oldValue, handle: nil)
        context.bindings.withLock {
            $0[binding.number] = HostContext.BindingInfo(
                name: "\(binding)", space: addressSpace.rawValue, start: start, end: start &+ length)
        }
        let status = call("attach", binding) { plugin.descriptor.pointee.attach!(instance, &desc, &handle, &error) }
        guard status == mmulab_status(MMULAB_OK) else {
            // A failed attach must leave nothing either.
            reclaimLeftovers(of: binding.number, after: "a failed attach")
            context.bindings.withLock { _ = $0.removeValue(forKey: binding.number) }
            throw callError("attach", status, error)
        }
        let made = Binding(
            addressSpace: addressSpace, start: start, length: length, deviceAddress: desc.device_address, number: binding.number, handle: handle)
        bindings.withLock { $0.append(made) }
        return made
    }

    public func detach(_ binding: Binding) {
        let known = bindings.withLock { list in
            guard let index = list.firstIndex(where: { $0 === binding }) else { return false }
            list.remove(at: index)
            return true
        }
        guard known else { return }
        call("detach", binding) { plugin.descriptor.pointee.detach!(instance, binding.handle) }
        reclaimLeftovers(of: binding.number, after: "detach")
        context.bindings.withLock { _ = $0.removeValue(forKey: binding.number) }
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
        let status = call("access", binding) {
            plugin.descriptor.pointee.access!(
                instance, binding.handle, deviceAddress, flags, buffer.baseAddress, UInt32(buffer.count), &error)
        }
        guard status == mmulab_status(MMULAB_OK) else { throw callError("access", status, error) }
    }

    /// Faults a range into the device ahead of use, if the plugin can.
    public func prefetch(_ binding: Binding, deviceAddress: UInt64, length: UInt64) throws(PluginCallError) {
        guard let prefetch = plugin.descriptor.pointee.prefetch else {
            throw PluginCallError(plugin: plugin.name, operation: "prefetch", status: mmulab_status(MMULAB_ERR_NOT_SUPPORTED), message: "not provided")
        }
        var error = mmulab_error()
        let status = call("prefetch", binding) { prefetch(instance, binding.handle, deviceAddress, length, &error) }
        guard status == mmulab_status(MMULAB_OK) else { throw callError("prefetch", status, error) }
    }

    /// Moves a range of the binding to the device's memory (`toDevice`) or
    /// back, if the plugin can.
    public func migrate(_ binding: Binding, deviceAddress: UInt64, length: UInt64, toDevice: Bool) throws(PluginCallError) {
        guard let migrate = plugin.descriptor.pointee.migrate else {
            throw PluginCallError(plugin: plugin.name, operation: "migrate", status: mmulab_status(MMULAB_ERR_NOT_SUPPORTED), message: "not provided")
        }
        var error = mmulab_error()
        let status = call("migrate", binding) { migrate(instance, binding.handle, deviceAddress, length, toDevice, &error) }
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
        let status = call("control", binding) { control(instance, binding.handle, command, argument.baseAddress, UInt64(argument.count), &error) }
        guard status == mmulab_status(MMULAB_OK) else { throw callError("control", status, error) }
    }

    /// The plugin's named counters.
    public func statistics() -> [(name: String, value: UInt64)] {
        guard let count = plugin.descriptor.pointee.stat_count, let get = plugin.descriptor.pointee.stat_get else { return [] }
        return call("stat_count", nil) { () -> [(name: String, value: UInt64)] in
            (0..<count(instance)).compactMap { index in
                var name: UnsafePointer<CChar>? = nil
                var value: UInt64 = 0
                guard get(instance, index, &name, &value) == mmulab_status(MMULAB_OK), let name else { return nil }
                return (String(cString: name), value)
            }
        }
    }

    /// Detaches every binding, then destroys the instance, then undoes (and
    /// reports) whatever it left. Idempotent.
    public func destroy() {
        guard !destroyed else { return }
        destroyed = true
        for binding in bindings.withLock({ list in defer { list.removeAll() }; return list }).reversed() {
            call("detach", binding) { plugin.descriptor.pointee.detach!(instance, binding.handle) }
            reclaimLeftovers(of: binding.number, after: "detach")
            context.bindings.withLock { _ = $0.removeValue(forKey: binding.number) }
        }
        // No migrate_to_ram into an instance being torn down: the host brings pages home itself.
        context.liveInstance.store(0, ordering: .releasing)
        call("destroy", nil) { plugin.descriptor.pointee.destroy!(instance) }
        let unjoined = context.threads.withLock { $0.count }
        if unjoined > 0 { context.misbehaving("destroy returned with \(unjoined) thread(s) from thread_create not joined") }
        reclaimLeftovers(of: nil, after: "destroy")
        context.putLeftoverReferences()
        context.bringDeviceMemoryHome()
        context.quarantine.drop()
    }

    /// Calls the plugin made into the host from threads the host did not
    /// make while the machine ran under a controlled scheduler (each makes
    /// the run irreproducible), one line per thread, naming the plugin.
    public var scheduleEscapes: [String] { context.scheduleEscapes }

    deinit { destroy() }

    private func callError(_ operation: String, _ status: mmulab_status, _ error: mmulab_error) -> PluginCallError {
        PluginCallError(plugin: plugin.name, operation: operation, status: status, message: message(of: error))
    }

    /// What `binding` (nil: the whole instance) still holds after `after`
    /// returned: reported and undone. For a binding that is its intervals
    /// and pins; for the instance, everything.
    private func reclaimLeftovers(of binding: UInt64?, after: String) {
        context.reclaimLeftovers(of: binding, after: after)
    }
}

extension HostContext {
    /// See `PluginInstance.reclaimLeftovers`. The registrations are first
    /// marked orphaned (the host answers their callbacks from then on, so
    /// nothing reaches the plugin's freed memory), then removed.
    func reclaimLeftovers(of binding: UInt64?, after: String) {
        let belongs = { (owner: UInt64) in binding == nil || owner == binding }
        let (intervals, subscriptions, shrinkers, pins, pages) = ledger.withLock { ledger in
            (
                ledger.intervals.values.filter { belongs($0.binding) && !$0.removed.load(ordering: .relaxed) }.sorted { $0.start < $1.start },
                binding == nil ? Array(ledger.subscriptions.values) : [],
                binding == nil ? Array(ledger.shrinkers.values) : [],
                ledger.takePins(of: binding),
                binding == nil ? ledger.pageTablePages.sorted { $0.key < $1.key } : []
            )
        }
        let whose = binding == nil ? "destroy" : "detach of its binding"
        let suffix = after == "a failed attach" ? "a failed attach" : binding == nil ? "destroy" : "detach"
        for record in intervals {
            record.invalidator.orphaned.store(true, ordering: .releasing)
            record.removed.store(true, ordering: .releasing)
            report(
                after, "\(record.what) was left registered after \(whose) returned (removed by the host)", kind: .leak,
                summary: "interval left registered after \(suffix)", binding: record.binding)
            remove(record)
        }
        for record in subscriptions where !record.ended.load(ordering: .relaxed) {
            record.subscriber.orphaned.store(true, ordering: .releasing)
            record.ended.store(true, ordering: .releasing)
            report(
                after, "\(record.what) was left registered after destroy returned (ended by the host)", kind: .leak,
                summary: "subscription left registered after destroy", binding: record.binding)
            end(record)
        }
        for record in shrinkers where !record.unregistered.load(ordering: .relaxed) {
            record.shrinker.orphaned.store(true, ordering: .releasing)
            record.unregistered.store(true, ordering: .releasing)
            report(
                after, "\(record.what) was left registered after destroy returned (unregistered by the host)", kind: .leak,
                summary: "shrinker left registered after destroy", binding: record.binding)
            unregister(record)
        }
        if !pins.isEmpty {
            let count = pins.reduce(0) { $0 + $1.hold.count }
            let frames = pins.prefix(4).map { "pfn#\($0.frame)" }.joined(separator: ", ")
            report(
                after, "\(count) pins (\(frames)\(pins.count > 4 ? ", ..." : "")) were still held after \(whose) returned (unpinned by the host)",
                kind: .leak, summary: "pin left after \(suffix)", binding: binding ?? pins[0].hold.binding)
            // A pin taken for writing is returned dirty: the device may have written.
            for writable in [true, false] {
                var translations: [DeviceTranslation] = []
                for (frame, hold) in pins where hold.writable == writable {
                    for _ in 0..<hold.count {
                        translations.append(
                            DeviceTranslation(address: 0, frame: PageFrameNumber(UInt64(frame)), generation: hold.generation, writable: writable, pinned: true))
                    }
                }
                machine.unpin(translations, dirty: writable)
            }
        }
        if !pages.isEmpty {
            report(
                after, "\(pages.count) page-table pages (\(pages.prefix(4).map { "pfn#\($0.key)" }.joined(separator: ", "))) were still held after destroy returned (freed by the host)",
                kind: .leak, summary: "page-table page left after destroy")
            ledger.withLock { ledger in for (frame, _) in pages { ledger.pageTablePages.removeValue(forKey: frame) } }
            for (frame, _) in pages { machine.freeDevicePageTablePage(PageFrameNumber(UInt64(frame))) }
        }
    }
}
