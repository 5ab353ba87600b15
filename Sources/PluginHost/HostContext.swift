import CDevicePluginABI
import LabSync
import MMUNotifier
import VirtualMemory

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

/// The host side of one plugin instance: the machine it works on and the
/// services table handed to `create`. The table's `context` is this object.
final class HostContext: @unchecked Sendable {
    // @unchecked: immutable after init, apart from the logs, which lock.
    let machine: Machine
    let pluginName: String
    let log: ReportLog<PluginLogEntry>
    let table: UnsafeMutablePointer<mmulab_host>
    /// The whole-space subscriptions the plugin holds now.
    let subscriptions: SpinLocked<[ObjectIdentifier: CSubscriber]>
    /// The device memories the instance made (ABI 1.1), all with one owner.
    let deviceMemories: SpinLocked<[DeviceMemory]>
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

    init(machine: Machine, pluginName: String, negotiatedMinor: Int, log: ReportLog<PluginLogEntry>, observer: (any CallbackObserver)?) {
        self.negotiatedMinor = negotiatedMinor
        self.machine = machine
        self.observer = observer
        device = machine.makeDeviceID()
        self.pluginName = pluginName
        self.log = log
        deterministic = machine.sync.isControlled
        foreignCallers = SpinLocked([], name: "\(pluginName) foreign callers", domain: machine.sync)
        threads = SpinLocked([], name: "\(pluginName) threads", domain: machine.sync)
        subscriptions = SpinLocked([:], name: "\(pluginName) subscriptions", domain: machine.sync)
        deviceMemories = SpinLocked([], name: "\(pluginName) device memories", domain: machine.sync)
        table = .allocate(capacity: 1)
        table.initialize(to: Self.makeTable())
        table.pointee.context = Unmanaged.passUnretained(self).toOpaque()
    }

    deinit { table.deallocate() }

    static func from(_ ctx: UnsafeMutableRawPointer?) -> HostContext {
        Unmanaged<HostContext>.fromOpaque(ctx!).takeUnretainedValue()
    }

    func space(_ id: UInt64) -> AddressSpace? { machine.addressSpace(AddressSpaceID(id)) }

    /// The address space a DMA goes to. One that has exited is not there
    /// to reach: the access is recorded as one after exit (the plugin kept
    /// a translation its `release` should have dropped) and does not happen.
    func liveSpace(_ id: UInt64, _ pfn: mmulab_pfn, write: Bool) -> AddressSpace? {
        if let space = space(id) { return space }
        if machine.hasMade(AddressSpaceID(id)) {
            machine.recordAccessAfterExit(AddressSpaceID(id), translation(pfn), issuer: device, write: write)
        }
        return nil
    }

    /// The migration owner of the instance's device memory, if it made any.
    var devicePrivateOwner: OwnerCookie? { deviceMemories.withLock { $0.first?.owner } }

    /// Brings every page still in the instance's device memory home (after
    /// destroy: nothing a plugin left in device memory is lost).
    func bringDeviceMemoryHome() {
        for memory in deviceMemories.withLock({ $0 }) {
            while memory.usedPages > 0, machine.evictDeviceMemory(memory, pages: memory.capacity) > 0 {}
        }
    }

    // MARK: - The services table

    private static func makeTable() -> mmulab_host {
        var t = mmulab_host()
        t.struct_size = UInt32(MemoryLayout<mmulab_host>.size)
        t.abi_major = UInt16(MMULAB_ABI_MAJOR)
        t.abi_minor = UInt16(MMULAB_ABI_MINOR)

        t.log = { ctx, level, message in
            let host = HostContext.from(ctx)
            host.log.record(
                PluginLogEntry(
                    plugin: host.pluginName, level: PluginLogEntry.Level(rawValue: level) ?? .info,
                    message: message.map { String(cString: $0) } ?? ""))
        }

        t.lock_create = { ctx, name, kind in
            let host = HostContext.from(ctx)
            let label = name.map { String(cString: $0) } ?? "\(host.pluginName) lock"
            host.checkCaller("lock_create")
            let lock = kind == Int32(MMULAB_LOCK_SPIN.rawValue)
                ? HostLock(spin: SpinLock(label, domain: host.machine.sync), host: host)
                : HostLock(sleeping: SleepingLock(label, domain: host.machine.sync), host: host)
            return OpaquePointer(Unmanaged.passRetained(lock).toOpaque())
        }
        t.lock_destroy = { lock in Unmanaged<HostLock>.fromOpaque(UnsafeRawPointer(lock!)).release() }
        t.lock = { lock in
            let l = Unmanaged<HostLock>.fromOpaque(UnsafeRawPointer(lock!)).takeUnretainedValue()
            l.host.checkCaller("lock")
            if let spin = l.spin { spin.lock() } else { l.sleeping!.lock() }
        }
        t.trylock = { lock in
            let l = Unmanaged<HostLock>.fromOpaque(UnsafeRawPointer(lock!)).takeUnretainedValue()
            l.host.checkCaller("trylock")
            return l.spin?.tryLock() ?? l.sleeping!.tryLock()
        }
        t.unlock = { lock in
            let l = Unmanaged<HostLock>.fromOpaque(UnsafeRawPointer(lock!)).takeUnretainedValue()
            l.host.checkCaller("unlock")
            if let spin = l.spin { spin.unlock() } else { l.sleeping!.unlock() }
        }

        t.completion_create = { ctx, name in
            let host = HostContext.from(ctx)
            host.checkCaller("completion_create")
            let completion = Completion(name.map { String(cString: $0) } ?? "completion", domain: host.machine.sync)
            return OpaquePointer(Unmanaged.passRetained(HostCompletion(completion, host: host)).toOpaque())
        }
        t.completion_destroy = { c in Unmanaged<HostCompletion>.fromOpaque(UnsafeRawPointer(c!)).release() }
        t.completion_complete = { c in
            let c = HostCompletion.from(c)
            c.host.checkCaller("completion_complete")
            c.completion.complete()
        }
        t.completion_complete_all = { c in
            let c = HostCompletion.from(c)
            c.host.checkCaller("completion_complete_all")
            c.completion.completeAll()
        }
        t.completion_reinit = { c in HostCompletion.from(c).completion.reinit() }
        t.completion_wait = { c, timeout in
            let c = HostCompletion.from(c)
            c.host.checkCaller("completion_wait")
            if timeout == 0 {
                c.completion.wait()
                return true
            }
            return c.completion.wait(timeout: .nanoseconds(Int64(clamping: timeout)))
        }
        t.sleep_ns = { ctx, ns in
            let host = HostContext.from(ctx)
            host.checkCaller("sleep_ns")
            host.machine.sync.sleep(for: .nanoseconds(Int64(clamping: ns)))
        }
        t.in_non_blockable = { _ in ExecutionContext.isCurrentNonBlockable }
        t.in_reclaim = { _ in ExecutionContext.isCurrentInReclaim }

        t.subscribe = { ctx, addressSpace, ops, data, out, error in
            let host = HostContext.from(ctx)
            host.checkCaller("subscribe")
            guard let ops, ops.pointee.invalidate_range_start != nil, ops.pointee.invalidate_range_end != nil else {
                return fail(error, MMULAB_ERR_INVALID, "subscribe: the ops table lacks invalidate_range_start/end")
            }
            guard let space = host.space(addressSpace) else {
                return fail(error, MMULAB_ERR_INVALID, "subscribe: no address space \(addressSpace)")
            }
            let table = copyTable(ops, sizeField: \.struct_size, empty: mmulab_subscriber_ops())
            let subscriber = CSubscriber(
                ops: table, data: data, name: host.pluginName, device: host.device, observer: host.observer, clock: host.machine.sync,
                minor: host.negotiatedMinor)
            do {
                try space.notifiers.register(subscriber)
            } catch let failure {
                return fail(error, MMULAB_ERR_KILLED, "subscribe: \(failure)")
            }
            let record = SubscriptionRecord(subscriber: subscriber, notifiers: space.notifiers)
            host.subscriptions.withLock { $0[ObjectIdentifier(subscriber)] = subscriber }
            out?.pointee = OpaquePointer(Unmanaged.passRetained(record).toOpaque())
            return mmulab_status(MMULAB_OK)
        }
        t.unsubscribe = { ctx, subscription in
            let record = Unmanaged<SubscriptionRecord>.fromOpaque(UnsafeRawPointer(subscription!)).takeRetainedValue()
            try? record.notifiers.unregister(record.subscriber)
            HostContext.from(ctx).subscriptions.withLock { _ = $0.removeValue(forKey: ObjectIdentifier(record.subscriber)) }
        }
        t.interval_insert = { ctx, addressSpace, start, length, ops, data, out, error in
            let host = HostContext.from(ctx)
            host.checkCaller("interval_insert")
            guard let ops, ops.pointee.invalidate != nil else {
                return fail(error, MMULAB_ERR_INVALID, "interval_insert: the ops table lacks invalidate")
            }
            guard length > 0, start % 4096 == 0, length % 4096 == 0 else {
                return fail(error, MMULAB_ERR_INVALID, "interval_insert: start and length must be page aligned and nonzero")
            }
            guard let space = host.space(addressSpace) else {
                return fail(error, MMULAB_ERR_INVALID, "interval_insert: no address space \(addressSpace)")
            }
            let table = copyTable(ops, sizeField: \.struct_size, empty: mmulab_interval_ops())
            do {
                let interval = try space.notifiers.insertInterval(
                    start: start, end: start + length,
                    ops: CInterval(
                        ops: table, data: data, name: host.pluginName, device: host.device, observer: host.observer,
                        clock: host.machine.sync, minor: host.negotiatedMinor))
                out?.pointee = OpaquePointer(Unmanaged.passRetained(interval).toOpaque())
                return mmulab_status(MMULAB_OK)
            } catch let failure {
                return fail(error, MMULAB_ERR_KILLED, "interval_insert: \(failure)")
            }
        }
        t.interval_remove = { _, handle in
            let interval = Unmanaged<IntervalNotifier>.fromOpaque(UnsafeRawPointer(handle!)).takeRetainedValue()
            try? interval.owner.removeInterval(interval)
        }
        t.interval_read_begin = { handle in
            Unmanaged<IntervalNotifier>.fromOpaque(UnsafeRawPointer(handle!)).takeUnretainedValue().readBegin()
        }
        t.interval_read_retry = { handle, seq in
            Unmanaged<IntervalNotifier>.fromOpaque(UnsafeRawPointer(handle!)).takeUnretainedValue().readRetry(seq)
        }
        t.interval_set_seq = { handle, seq in
            Unmanaged<IntervalNotifier>.fromOpaque(UnsafeRawPointer(handle!)).takeUnretainedValue().setSeq(seq)
        }

        t.fault_range = { ctx, addressSpace, start, length, flags, pfns, error in
            HostContext.from(ctx).checkCaller("fault_range")
            return HostContext.from(ctx).translate(addressSpace, start, length, flags, pfns, error, pin: false)
        }
        t.pin = { ctx, addressSpace, start, length, flags, pfns, error in
            HostContext.from(ctx).checkCaller("pin")
            return HostContext.from(ctx).translate(addressSpace, start, length, flags, pfns, error, pin: true)
        }
        t.unpin = { ctx, pfns, count, dirty in
            let host = HostContext.from(ctx)
            let translations = (0..<Int(count)).map { translation(pfns![$0]) }
            host.machine.unpin(translations, dirty: dirty)
        }
        // A device page needs neither: it comes home dirty, and is never reclaimed.
        t.set_dirty = { ctx, pfn in
            guard let pfn, !pfn.pointee.isDevicePrivate else { return }
            HostContext.from(ctx).machine.setDirty(PageFrameNumber(pfn.pointee.pfn))
        }
        t.mark_accessed = { ctx, pfn in
            guard let pfn, !pfn.pointee.isDevicePrivate else { return }
            HostContext.from(ctx).machine.markAccessed(PageFrameNumber(pfn.pointee.pfn))
        }
        t.dma_read = { ctx, addressSpace, pfn, buffer, length in
            let host = HostContext.from(ctx)
            host.checkCaller("dma_read")
            guard let pfn, let buffer, let space = host.liveSpace(addressSpace, pfn.pointee, write: false) else { return }
            host.machine.dmaAccess(space, translation(pfn.pointee), issuer: host.device, write: false) { page in
                buffer.copyMemory(from: page.baseAddress!, byteCount: min(Int(length), page.count))
            }
        }
        t.dma_write = { ctx, addressSpace, pfn, buffer, length in
            let host = HostContext.from(ctx)
            host.checkCaller("dma_write")
            guard let pfn, let buffer, let space = host.liveSpace(addressSpace, pfn.pointee, write: true) else { return }
            host.machine.dmaAccess(space, translation(pfn.pointee), issuer: host.device, write: true) { page in
                page.baseAddress!.copyMemory(from: buffer, byteCount: min(Int(length), page.count))
            }
        }
        t.alloc_page_table_page = { ctx, out in
            guard let page = HostContext.from(ctx).machine.allocateDevicePageTablePage() else { return mmulab_status(MMULAB_ERR_NO_MEMORY) }
            out?.pointee = page.rawValue
            return mmulab_status(MMULAB_OK)
        }
        t.free_page_table_page = { ctx, pfn in HostContext.from(ctx).machine.freeDevicePageTablePage(PageFrameNumber(pfn)) }

        t.shrinker_register = { ctx, name, ops, data, out in
            let host = HostContext.from(ctx)
            host.checkCaller("shrinker_register")
            guard let ops, ops.pointee.count != nil, ops.pointee.scan != nil else { return mmulab_status(MMULAB_ERR_INVALID) }
            let label = name.map { String(cString: $0) } ?? host.pluginName
            let shrinker = CShrinker(ops: copyTable(ops, sizeField: \.struct_size, empty: mmulab_shrinker_ops()), data: data, name: label, observer: host.observer, clock: host.machine.sync)
            host.machine.shrinkers.register(shrinker)
            out?.pointee = OpaquePointer(Unmanaged.passRetained(shrinker).toOpaque())
            return mmulab_status(MMULAB_OK)
        }
        t.shrinker_unregister = { ctx, handle in
            let shrinker = Unmanaged<CShrinker>.fromOpaque(UnsafeRawPointer(handle!)).takeRetainedValue()
            HostContext.from(ctx).machine.shrinkers.unregister(shrinker)
        }
        DeviceMemoryServices.install(into: &t)
        ThreadServices.install(into: &t)
        ExclusiveServices.install(into: &t)
        return t
    }

    /// fault_range and pin.
    func translate(
        _ addressSpace: UInt64, _ start: UInt64, _ length: UInt64, _ flags: UInt32,
        _ pfns: UnsafeMutablePointer<mmulab_pfn>?, _ errorOut: UnsafeMutablePointer<mmulab_error>?, pin: Bool
    ) -> mmulab_status {
        guard let space = space(addressSpace) else { return fail(errorOut, MMULAB_ERR_INVALID, "no address space \(addressSpace)") }
        guard let pfns else { return fail(errorOut, MMULAB_ERR_INVALID, "no pfn buffer") }
        let write = flags & UInt32(MMULAB_FAULT_WRITE) != 0
        // Long-term pins are 1.5's; an older instance never meant the bit.
        let longTerm = pin && negotiatedMinor >= 5 && flags & UInt32(MMULAB_PIN_LONGTERM) != 0
        do {
            let translations = pin
                ? try space.pin(start: start, length: length, write: write, longTerm: longTerm)
                : try space.faultRange(start: start, length: length, write: write, devicePrivateOwner: devicePrivateOwner)
            for (i, t) in translations.enumerated() {
                pfns[i] = mmulab_pfn(
                    address: t.address, pfn: t.frame.rawValue, generation: t.generation,
                    flags: (t.writable ? UInt32(MMULAB_PFN_WRITABLE) : 0) | (t.pinned ? UInt32(MMULAB_PFN_PINNED) : 0)
                        | (t.devicePage != nil ? UInt32(MMULAB_PFN_DEVICE_PRIVATE) : 0)
                        | (t.huge && negotiatedMinor >= 5 ? UInt32(MMULAB_PFN_HUGE) : 0))
            }
            return mmulab_status(MMULAB_OK)
        } catch {
            return fail(errorOut, status(for: error), "\(pin ? "pin" : "fault_range") 0x\(String(start, radix: 16)): \(error)")
        }
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
}

func status(for error: MemoryError) -> Int {
    switch error {
    case .segmentationFault, .protectionFault: MMULAB_ERR_FAULT
    case .outOfMemory: MMULAB_ERR_NO_MEMORY
    case .killed, .exited: MMULAB_ERR_KILLED
    case .invalidArgument: MMULAB_ERR_INVALID
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
