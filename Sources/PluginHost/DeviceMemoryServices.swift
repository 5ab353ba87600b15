import CDevicePluginABI
import LabSync
import MMUNotifier
import VirtualMemory

/// The device-private memory services of ABI 1.1 (`device_memory_*`,
/// `migrate_to_device`, `migrate_to_host`): thin translations onto
/// `VirtualMemory`'s `DeviceMemory` and its migrations, each handle checked
/// to be a device memory this instance made.
enum DeviceMemoryServices {
    /// Puts each service below into the host table. The closures only forward: Swift forms a
    /// C function pointer from a literal closure or a global function, not from a static method.
    static func install(into t: inout mmulab_host) {
        t.device_memory_create = { DeviceMemoryServices.deviceMemoryCreate($0, $1, $2, $3, $4, $5) }
        t.device_memory_used = { DeviceMemoryServices.deviceMemoryUsed($0) }
        t.migrate_to_device = { DeviceMemoryServices.migrateToDevice($0, $1, $2, $3, $4, $5, $6) }
        t.migrate_to_host = { DeviceMemoryServices.migrateToHost($0, $1, $2, $3, $4, $5, $6) }
        t.device_memory_evict = { DeviceMemoryServices.deviceMemoryEvict($0, $1, $2) }
    }

    /// [blockable] `device_memory_create`: 1...2^31-1 pages, a nonzero owner,
    /// one owner for all of an instance's device memories.
    static func deviceMemoryCreate(
        _ ctx: UnsafeMutableRawPointer?, _ name: UnsafePointer<CChar>?, _ pages: UInt64, _ owner: UInt64,
        _ out: UnsafeMutablePointer<OpaquePointer?>?, _ error: UnsafeMutablePointer<mmulab_error>?
    ) -> mmulab_status {
        guard let host = HostContext.from(ctx, "device_memory_create") else { return mmulab_status(MMULAB_ERR_INVALID) }
        CallFrames.enterService(host, "device_memory_create")
        defer { CallFrames.leave() }
        guard pages > 0, pages < UInt64(Int32.max) else {
            return host.invalid(error, "device_memory_create", "\(pages) pages (1...2^31-1)")
        }
        guard owner != 0 else { return host.invalid(error, "device_memory_create", "the owner must not be 0") }
        guard let out else { return host.invalid(error, "device_memory_create", "out is NULL") }
        let label = name.map { String(cString: $0) } ?? "\(host.pluginName) device memory"
        let made = host.deviceMemories.withLock { list -> DeviceMemory? in
            guard list.allSatisfy({ $0.owner.rawValue == owner }) else { return nil }
            let memory = host.machine.makeDeviceMemory(name: label, pages: Int(pages), owner: OwnerCookie(owner))
            list.append(memory)
            return memory
        }
        guard let made else {
            return host.invalid(error, "device_memory_create", "an instance's device memories share one owner")
        }
        if host.migrateToRAMOperation != nil {
            // A CPU fault on one of its pages asks the plugin first (1.6).
            // Through the link, not a weak reference (`ContextLink`): nothing once the context is gone.
            made.setMigrateToRAM { [link = host.link] space, address in _ = link.withContext { $0.migrateToRAM(space, address) } }
        }
        out.pointee = OpaquePointer(Unmanaged.passUnretained(made).toOpaque())  // the context keeps it
        return mmulab_status(MMULAB_OK)
    }

    /// [any-thread] `device_memory_used`: pages of the device memory in use.
    static func deviceMemoryUsed(_ handle: OpaquePointer?) -> UInt64 {
        guard let handle else {
            HostContext.reportUnattributed("device_memory_used", "the device memory is NULL")
            return 0
        }
        return UInt64(Unmanaged<DeviceMemory>.fromOpaque(UnsafeRawPointer(handle)).takeUnretainedValue().usedPages)
    }

    /// [blockable] `migrate_to_device`: the range's pages into the device memory
    /// (Linux: migrate_vma_setup/pages/finalize).
    static func migrateToDevice(
        _ ctx: UnsafeMutableRawPointer?, _ handle: OpaquePointer?, _ addressSpace: UInt64, _ start: UInt64, _ length: UInt64,
        _ moved: UnsafeMutablePointer<UInt64>?, _ errorOut: UnsafeMutablePointer<mmulab_error>?
    ) -> mmulab_status {
        migrate("migrate_to_device", ctx, handle, addressSpace, start, length, moved, errorOut) { machine, space, memory, _ throws(MemoryError) in
            try machine.migrateToDevice(space, start: start, length: length, into: memory)
        }
    }

    /// [blockable] `migrate_to_host`: the range's pages in the device memory home.
    static func migrateToHost(
        _ ctx: UnsafeMutableRawPointer?, _ handle: OpaquePointer?, _ addressSpace: UInt64, _ start: UInt64, _ length: UInt64,
        _ moved: UnsafeMutablePointer<UInt64>?, _ errorOut: UnsafeMutablePointer<mmulab_error>?
    ) -> mmulab_status {
        migrate("migrate_to_host", ctx, handle, addressSpace, start, length, moved, errorOut) { machine, space, memory, host throws(MemoryError) in
            // From 1.3 the owner is announced, as migrate_to_ram does.
            try machine.migrateToHost(space, start: start, length: length, from: memory, announcingOwner: host.negotiatedMinor >= 3)
        }
    }

    /// [blockable] `device_memory_evict`: device memory pressure; how many pages
    /// came home.
    static func deviceMemoryEvict(_ ctx: UnsafeMutableRawPointer?, _ handle: OpaquePointer?, _ pages: UInt64) -> UInt64 {
        guard let host = HostContext.from(ctx, "device_memory_evict") else { return 0 }
        CallFrames.enterService(host, "device_memory_evict")
        defer { CallFrames.leave() }
        guard let memory = host.deviceMemory(handle, "device_memory_evict") else { return 0 }
        return UInt64(host.machine.evictDeviceMemory(memory, pages: Int(clamping: pages)))
    }
}

extension HostContext {
    /// The device memory behind `handle` if this instance made it; nil (reported) otherwise.
    func deviceMemory(_ handle: OpaquePointer?, _ service: String) -> DeviceMemory? {
        guard let handle else {
            report(service, "the device memory is NULL")
            return nil
        }
        let raw = UnsafeRawPointer(handle)
        guard let memory = deviceMemories.withLock({ list in list.first { UnsafeRawPointer(Unmanaged.passUnretained($0).toOpaque()) == raw } }) else {
            report(service, "the device memory handle is not one device_memory_create gave this instance")
            return nil
        }
        return memory
    }

    /// The plugin's migrate_to_ram for the page at `address` (a CPU fault
    /// on it; the fault path holds the mmap lock shared), in a frame naming
    /// the operation and the address. Nothing while the instance is not
    /// live (being created or destroyed): the primary brings the page home
    /// itself then, as it does with whatever the plugin left.
    func migrateToRAM(_ space: AddressSpace, _ address: UInt64) {
        let instance = liveInstance.load(ordering: .acquiring)
        guard instance != 0, let operation = migrateToRAMOperation else { return }
        var error = mmulab_error()
        let status = callPlugin(self, "migrate_to_ram", describe: { frame in
            frame.pointee.a = space.id.rawValue
            frame.pointee.b = address
        }) {
            operation(UnsafeMutableRawPointer(bitPattern: instance), space.id.rawValue, address, &error)
        }
        // NOT_SUPPORTED: nothing to do for this page (the plugin says so); the host brings it home.
        if status != mmulab_status(MMULAB_OK) && status != mmulab_status(MMULAB_ERR_NOT_SUPPORTED) {
            log.record(PluginLogEntry(plugin: pluginName, level: .warning,
                message: "migrate_to_ram 0x\(String(address, radix: 16)) failed (status \(status)): the host brings the page home itself"))
        }
    }

    /// Brings every page still in the instance's device memory home, and
    /// reports how many were left there (destroy must bring them home
    /// itself: a driver's teardown evicts its chunks, as nouveau_dmem_fini
    /// does; nothing a plugin left in device memory is lost).
    func bringDeviceMemoryHome() {
        for memory in deviceMemories.withLock({ $0 }) { memory.setMigrateToRAM(nil) }
        for memory in deviceMemories.withLock({ $0 }) where memory.usedPages > 0 {
            report(
                "destroy", "device memory '\(memory.name)' still held \(memory.usedPages) pages when destroy returned (brought home by the host)",
                kind: .leak, summary: "device memory left in use after destroy")
            while memory.usedPages > 0, machine.evictDeviceMemory(memory, pages: memory.capacity) > 0 {}
        }
    }
}

/// One migration service: checks the memory and the range, finds the
/// address space, runs `body`, reports how many pages moved or why none could.
private func migrate(
    _ name: String, _ ctx: UnsafeMutableRawPointer?, _ handle: OpaquePointer?, _ addressSpace: UInt64, _ start: UInt64, _ length: UInt64,
    _ moved: UnsafeMutablePointer<UInt64>?, _ errorOut: UnsafeMutablePointer<mmulab_error>?,
    _ body: (Machine, AddressSpace, DeviceMemory, HostContext) throws(MemoryError) -> Int
) -> mmulab_status {
    guard let ctx else {
        HostContext.reportUnattributed(name, "called with a NULL context (pass host->context)")
        return fail(errorOut, MMULAB_ERR_INVALID, "\(name): NULL context")
    }
    let host = Unmanaged<HostContext>.fromOpaque(ctx).takeUnretainedValue()
    CallFrames.enterService(host, "migrate")
    defer { CallFrames.leave() }
    guard let memory = host.deviceMemory(handle, name) else { return fail(errorOut, MMULAB_ERR_INVALID, "\(name): not this instance's device memory") }
    let (end, overflow) = start.addingReportingOverflow(length)
    guard start % 4096 == 0, length > 0, length % 4096 == 0, !overflow, end <= AddressSpace.addressLimit else {
        return host.invalid(errorOut, name, "[0x\(String(start, radix: 16)), +\(length)) must be page aligned, nonzero and inside the address space")
    }
    let (found, status) = host.space(addressSpace, for: name, errorOut)
    guard let space = found else { return status }
    do throws(MemoryError) {
        let count = try body(host.machine, space, memory, host)
        moved?.pointee = UInt64(count)
        return mmulab_status(MMULAB_OK)
    } catch {
        if case .invalidArgument(let what) = error { return host.invalid(errorOut, name, what) }
        return fail(errorOut, PluginHost.status(for: error), "\(name) 0x\(String(start, radix: 16)): \(error)")
    }
}
