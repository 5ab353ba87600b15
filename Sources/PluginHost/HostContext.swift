import CDevicePluginABI
import Synchronization
import CPluginOops
import LabSync
import MMUNotifier
import VirtualMemory

#if canImport(Glibc)
import Glibc
#endif

/// What a plugin said through `host->log`.
public struct PluginLogEntry: Sendable, CustomStringConvertible {
    public enum Level: Int32, Sendable {
        case debug = 0, info, warning, error, misbehaving
    }
    public let plugin: String
    public let level: Level
    public let message: String
    public var description: String { "[\(plugin)] \(level): \(message)" }
}

/// The host side of one plugin instance: the machine it works on, the
/// services table handed to `create` (its `context` is this object), what
/// the instance holds (`ResourceLedger`) and what it did wrong.
///
/// Every service checks what the plugin passes before it touches the
/// machine (plugins are untrusted input): a bad argument is recorded in
/// `violations`, naming the plugin, the service and what was wrong, and
/// the service answers `MMULAB_ERR_INVALID` (or does nothing, if it
/// returns nothing). The machine's own preconditions stay: they guard the
/// host's invariants, and nothing a plugin passes reaches them unchecked.
/// The services are in `LockServices`, `NotifierServices`,
/// `MemoryServices` and `DeviceMemoryServices`.
final class HostContext: @unchecked Sendable {
    // @unchecked: immutable after init, apart from what is behind its own locks.
    let machine: Machine
    let pluginName: String
    /// How reports name the instance (`gpu#0` in a lab run; else the plugin's name).
    let displayName: String
    /// The same with the plugin's name and path, as a C string for the oops.
    let reportLabel: UnsafeMutablePointer<CChar>
    let log: ReportLog<PluginLogEntry>
    /// Misuses, leaks and locks held at return (`PluginContractViolation`).
    let violations: ReportLog<PluginContractViolation>
    let table: UnsafeMutablePointer<mmulab_host>
    /// What the instance holds, by binding.
    let ledger: SpinLocked<ResourceLedger>
    /// The device memories the instance made (ABI 1.1), all with one owner.
    let deviceMemories: SpinLocked<[DeviceMemory]>
    /// Handles the plugin gave back (destroyed locks and completions,
    /// removed intervals, ended subscriptions): kept alive a while, so a
    /// plugin that uses one again is caught instead of reaching freed memory.
    let quarantine: Quarantine
    /// Told how long each callback took, if anyone asked.
    let observer: (any CallbackObserver)?
    /// The machine's scheduler decides every interleaving: calls from
    /// threads it did not make are reported (`checkCaller`).
    let deterministic: Bool
    /// Threads (by tid) already reported for calling from outside the schedule.
    let foreignCallers: SpinLocked<[Int32]>
    /// The threads the plugin made (`thread_create`) and has not joined, by handle address.
    let threads: SpinLocked<[UInt]>
    /// The instance's identity as a device: its subscriptions carry it and
    /// its DMA names it, so the primary holds it to what it acknowledged.
    let device: DeviceID
    /// The ABI minor the plugin and the host agreed on.
    let negotiatedMinor: Int
    /// The lock-order validator, when the machine's domain validates lock order.
    let lockOrder: LockOrderValidator?
    /// `observer` or `lockOrder` is set: calls into the plugin take the observed path (`callObserved`).
    let observed: Bool
    /// Frames `0..<frameCount` and the zero page (`frameCount`) are frames.
    let zeroFrame: UInt64
    /// The plugin's migrate_to_ram (ABI 1.6; nil for an instance that
    /// negotiated less, or a plugin without one).
    let migrateToRAMOperation: (@convention(c) (UnsafeMutableRawPointer?, UInt64, UInt64, UnsafeMutablePointer<mmulab_error>?) -> mmulab_status)?
    /// The plugin's instance pointer while a device memory's migrate_to_ram
    /// may be called: set once create returned, cleared before destroy.
    let liveInstance = Atomic<UInt>(0)
    /// How the plugin's lock and completion handles reach this context
    /// while it lives (not a weak reference: `ContextLink`).
    let link = ContextLink<HostContext>()
    /// This object, unretained, as the C side sees it.
    var opaque: UnsafeMutableRawPointer { Unmanaged.passUnretained(self).toOpaque() }

    init(
        machine: Machine, plugin: LoadedPlugin, label: String?, log: ReportLog<PluginLogEntry>,
        observer: (any CallbackObserver)?
    ) {
        self.negotiatedMinor = plugin.minor
        self.machine = machine
        self.observer = observer
        device = machine.makeDeviceID()
        pluginName = plugin.name
        displayName = label ?? plugin.name
        reportLabel = strdup("\(label ?? plugin.name) (plugin \(plugin.name), \(plugin.path))")
        self.log = log
        deterministic = machine.sync.isControlled
        foreignCallers = SpinLocked([], name: "\(plugin.name) foreign callers", domain: machine.sync)
        threads = SpinLocked([], name: "\(plugin.name) threads", domain: machine.sync)
        violations = ReportLog(capacity: 1_000)
        ledger = SpinLocked(ResourceLedger(), name: "\(plugin.name) resources", domain: machine.sync)
        deviceMemories = SpinLocked([], name: "\(plugin.name) device memories", domain: machine.sync)
        quarantine = Quarantine(domain: machine.sync)
        bindings = SpinLocked([:], name: "\(plugin.name) bindings seen", domain: machine.sync)
        lockOrder = machine.sync.lockOrder
        observed = observer != nil || lockOrder != nil
        zeroFrame = UInt64(machine.zeroFrame)
        migrateToRAMOperation = plugin.minor >= 6 ? plugin.descriptor.pointee.migrate_to_ram : nil
        table = .allocate(capacity: 1)
        table.initialize(to: Self.makeTable())
        table.pointee.context = Unmanaged.passUnretained(self).toOpaque()
        link.attach(self)
    }

    deinit {
        // First: a handle's call in progress finishes while every field is here.
        link.detach { machine.sync.yield() }
        table.deallocate()
        free(reportLabel)
    }

    /// The context a service was called with. A NULL `ctx` is a misuse: it
    /// is reported against the instance whose call the thread is in (or, on
    /// a plugin's own thread, as unattributed) and the service does nothing.
    /// Under a controlled scheduler the caller's thread is checked too
    /// (`checkCaller`).
    @inline(__always)
    static func from(_ ctx: UnsafeMutableRawPointer?, _ service: StaticString) -> HostContext? {
        guard let ctx else {
            reportUnattributed("\(service)", "called with a NULL context (pass host->context)")
            return nil
        }
        let host = Unmanaged<HostContext>.fromOpaque(ctx).takeUnretainedValue()
        host.checkCaller(service)
        return host
    }

    /// Records a misuse whose instance is not known from the call: against
    /// the instance whose call the thread is in, else in `UnattributedViolations`.
    static func reportUnattributed(_ service: String, _ problem: String) {
        if let context = CallFrames.innermostContext {
            context.report(service, problem)
        } else {
            UnattributedViolations.log.record(
                PluginContractViolation(
                    kind: .misuse, plugin: "a plugin", service: service, problem: problem, during: "its own thread", binding: nil,
                    thread: ThreadIdentity.current))
        }
    }

    /// Records a violation of `kind` by this instance in `service`,
    /// naming the binding and operation the thread is in (or `binding`).
    func report(
        _ service: String, _ problem: String, kind: PluginContractViolation.Kind = .misuse, summary: String? = nil, binding: UInt64? = nil
    ) {
        let (current, during) = CallFrames.currentBinding(of: self)
        violations.record(
            PluginContractViolation(
                kind: kind, plugin: displayName, service: service, problem: problem, summary: summary, during: during,
                binding: describe(binding: binding ?? current), thread: ThreadIdentity.current))
    }

    /// Records a misuse and returns `MMULAB_ERR_INVALID` with the message in `error`.
    func invalid(_ error: UnsafeMutablePointer<mmulab_error>?, _ service: String, _ problem: String) -> mmulab_status {
        report(service, problem)
        return fail(error, MMULAB_ERR_INVALID, "\(service): \(problem)")
    }

    // MARK: - Bindings, as reports name them

    /// A binding as the ledger knows it: how reports name it, and the range it maps.
    struct BindingInfo {
        var name: String
        var space: UInt64
        var start: UInt64
        var end: UInt64
    }

    /// The instance's bindings by number, from just before `attach` is
    /// called to just after `detach` returned (set by `PluginInstance`).
    let bindings: SpinLocked<[UInt64: BindingInfo]>

    func describe(binding: UInt64) -> String? { binding == 0 ? nil : bindings.withLock { $0[binding]?.name } }

    /// The binding that owns what is made over `[start, end)` of `space`:
    /// the binding whose call the thread is in, if it maps that range, else
    /// the first attached binding that does (a plugin may serve one
    /// binding's fault in another's call: a GPU's batched fault handler),
    /// else none (the instance's).
    func owner(space: UInt64, start: UInt64, end: UInt64) -> UInt64 {
        let current = CallFrames.currentBinding(of: self).binding
        return bindings.withLock { all in
            let maps = { (info: BindingInfo) in info.space == space && info.start <= start && end <= info.end }
            if let info = all[current], maps(info) { return current }
            return all.filter { maps($0.value) }.keys.min() ?? 0
        }
    }

    // MARK: - Address spaces

    func space(_ id: UInt64) -> AddressSpace? { machine.addressSpace(AddressSpaceID(id)) }

    /// The address space `id` for `service`: nil with `MMULAB_ERR_KILLED`
    /// if it has exited (a race the plugin cannot avoid, not a misuse), nil
    /// with a misuse and `MMULAB_ERR_INVALID` if no such space was ever made.
    func space(_ id: UInt64, for service: String, _ error: UnsafeMutablePointer<mmulab_error>?) -> (AddressSpace?, mmulab_status) {
        if let space = space(id) { return (space, mmulab_status(MMULAB_OK)) }
        if machine.hasMade(AddressSpaceID(id)) {
            return (nil, fail(error, MMULAB_ERR_KILLED, "\(service): address space \(id) has exited"))
        }
        return (nil, invalid(error, service, "address space \(id) does not exist"))
    }

    /// The address space a DMA goes to. One that has exited is not there
    /// to reach: the access is recorded as one after exit (the plugin kept
    /// a translation its `release` should have dropped) and does not happen.
    func liveSpace(_ id: UInt64, _ pfn: mmulab_pfn, write: Bool, service: String) -> AddressSpace? {
        if let space = space(id) { return space }
        if machine.hasMade(AddressSpaceID(id)) {
            machine.recordAccessAfterExit(AddressSpaceID(id), translation(pfn), issuer: device, write: write)
        } else {
            report(service, "address space \(id) does not exist")
        }
        return nil
    }

    /// The migration owner of the instance's device memory, if it made any.
    var devicePrivateOwner: OwnerCookie? { deviceMemories.withLock { $0.first?.owner } }

    // MARK: - The services table

    private static func makeTable() -> mmulab_host {
        var t = mmulab_host()
        t.struct_size = UInt32(MemoryLayout<mmulab_host>.size)
        t.abi_major = UInt16(MMULAB_ABI_MAJOR)
        t.abi_minor = UInt16(MMULAB_ABI_MINOR)

        // Each service is a named function of its group, documented with the
        // header's context tag; these assign them into the table.
        ContextServices.install(into: &t)
        LockServices.install(into: &t)
        NotifierServices.install(into: &t)
        MemoryServices.install(into: &t)
        DeviceMemoryServices.install(into: &t)
        ThreadServices.install(into: &t)
        ExclusiveServices.install(into: &t)
        ReferenceServices.install(into: &t)
        return t
    }
}

func translation(_ pfn: mmulab_pfn) -> DeviceTranslation {
    DeviceTranslation(
        address: pfn.address, frame: PageFrameNumber(pfn.pfn), generation: pfn.generation,
        writable: pfn.flags & UInt32(MMULAB_PFN_WRITABLE) != 0, pinned: pfn.flags & UInt32(MMULAB_PFN_PINNED) != 0,
        devicePage: pfn.isDevicePrivate ? DevicePage(rawValue: pfn.pfn) : nil, exclusive: pfn.flags & UInt32(MMULAB_PFN_EXCLUSIVE) != 0)
}

extension mmulab_pfn {
    var isDevicePrivate: Bool { flags & UInt32(MMULAB_PFN_DEVICE_PRIVATE) != 0 }
    var isPinned: Bool { flags & UInt32(MMULAB_PFN_PINNED) != 0 }
}

func status(for error: MemoryError) -> Int {
    switch error {
    case .segmentationFault, .protectionFault: MMULAB_ERR_FAULT
    case .outOfMemory: MMULAB_ERR_NO_MEMORY
    case .killed, .exited: MMULAB_ERR_KILLED
    case .invalidArgument: MMULAB_ERR_INVALID
    case .busy: MMULAB_ERR_BUSY
    }
}

/// Fills `error` (if given) and returns `status`.
@discardableResult
func fail(_ error: UnsafeMutablePointer<mmulab_error>?, _ code: Int, _ message: String) -> mmulab_status {
    let status = mmulab_status(code)
    guard let error else { return status }
    error.pointee.status = status
    withUnsafeMutableBytes(of: &error.pointee.message) { buffer in
        let bytes = Array(message.utf8.prefix(buffer.count - 1))
        buffer.copyBytes(from: bytes)
        buffer[bytes.count] = 0
    }
    return status
}

/// The message a plugin put in an error.
func message(of error: mmulab_error) -> String {
    var copy = error.message
    return withUnsafeBytes(of: &copy) { raw in String(decoding: raw.prefix { $0 != 0 }, as: UTF8.self) }
}

/// Objects a plugin gave back, kept alive for a while (as ASan keeps freed
/// memory in quarantine): the newest `capacity` stay, older ones are let go.
final class Quarantine: @unchecked Sendable {
    // @unchecked: `kept` and `next` are only touched with `lock` held.
    static let capacity = 16_384
    private let lock: SpinLock
    private var kept: [AnyObject] = []
    private var next = 0

    init(domain: SyncDomain) { lock = SpinLock("plugin handle quarantine", domain: domain) }

    func keep(_ object: AnyObject) {
        // The evicted object is released after the lock is dropped (its deinit may do anything).
        let evicted: AnyObject? = lock.withLock {
            if kept.count < Self.capacity {
                kept.append(object)
                return nil
            }
            let old = kept[next]
            kept[next] = object
            next = (next + 1) % Self.capacity
            return old
        }
        withExtendedLifetime(evicted) {}
    }

    func drop() {
        let all = lock.withLock { () -> [AnyObject] in
            defer { kept = [] }
            return kept
        }
        withExtendedLifetime(all) {}
    }
}
