import CDevicePluginABI
import LabSync
import MMUNotifier
import VirtualMemory

/// The device-private memory services of ABI 1.1 (`device_memory_*`,
/// `migrate_to_device`, `migrate_to_host`): thin translations onto
/// `VirtualMemory`'s `DeviceMemory` and its migrations.
enum DeviceMemoryServices {
    static func install(into t: inout mmulab_host) {
        t.device_memory_create = { ctx, name, pages, owner, out, error in
            let host = HostContext.from(ctx)
            guard pages > 0, pages < UInt64(Int32.max) else {
                return fail(error, MMULAB_ERR_INVALID, "device_memory_create: \(pages) pages (1...2^31-1)")
            }
            guard owner != 0 else { return fail(error, MMULAB_ERR_INVALID, "device_memory_create: the owner must not be 0") }
            let label = name.map { String(cString: $0) } ?? "\(host.pluginName) device memory"
            let made = host.deviceMemories.withLock { list -> DeviceMemory? in
                guard list.allSatisfy({ $0.owner.rawValue == owner }) else { return nil }
                let memory = host.machine.makeDeviceMemory(name: label, pages: Int(pages), owner: OwnerCookie(owner))
                list.append(memory)
                return memory
            }
            guard let made else {
                return fail(error, MMULAB_ERR_INVALID, "device_memory_create: an instance's device memories share one owner")
            }
            out?.pointee = OpaquePointer(Unmanaged.passUnretained(made).toOpaque())  // the context keeps it
            return mmulab_status(MMULAB_OK)
        }
        t.device_memory_used = { handle in UInt64(memory(handle).usedPages) }
        t.migrate_to_device = { ctx, handle, addressSpace, start, length, moved, errorOut in
            migrate("migrate_to_device", ctx, addressSpace, start, moved, errorOut) { machine, space throws(MemoryError) in
                try machine.migrateToDevice(space, start: start, length: length, into: memory(handle))
            }
        }
        t.migrate_to_host = { ctx, handle, addressSpace, start, length, moved, errorOut in
            // From 1.3 the owner is announced, as migrate_to_ram does.
            let announce = HostContext.from(ctx).negotiatedMinor >= 3
            return migrate("migrate_to_host", ctx, addressSpace, start, moved, errorOut) { machine, space throws(MemoryError) in
                try machine.migrateToHost(space, start: start, length: length, from: memory(handle), announcingOwner: announce)
            }
        }
        t.device_memory_evict = { ctx, handle, pages in
            UInt64(HostContext.from(ctx).machine.evictDeviceMemory(memory(handle), pages: Int(clamping: pages)))
        }
    }
}

/// One migration service: finds the address space, runs `body`, reports
/// how many pages moved or why none could.
private func migrate(
    _ name: String, _ ctx: UnsafeMutableRawPointer?, _ addressSpace: UInt64, _ start: UInt64,
    _ moved: UnsafeMutablePointer<UInt64>?, _ errorOut: UnsafeMutablePointer<mmulab_error>?,
    _ body: (Machine, AddressSpace) throws(MemoryError) -> Int
) -> mmulab_status {
    let host = HostContext.from(ctx)
    guard let space = host.space(addressSpace) else { return fail(errorOut, MMULAB_ERR_INVALID, "\(name): no address space \(addressSpace)") }
    do throws(MemoryError) {
        moved?.pointee = UInt64(try body(host.machine, space))
        return mmulab_status(MMULAB_OK)
    } catch {
        return fail(errorOut, status(for: error), "\(name) 0x\(String(start, radix: 16)): \(error)")
    }
}

private func memory(_ handle: OpaquePointer?) -> DeviceMemory {
    Unmanaged<DeviceMemory>.fromOpaque(UnsafeRawPointer(handle!)).takeUnretainedValue()
}
