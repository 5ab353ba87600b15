import CDevicePluginABI
import LabSync
import MMUNotifier
import VirtualMemory

/// The device-exclusive service of ABI 1.5 (`make_exclusive`): a thin
/// translation onto `AddressSpace.makeExclusive`, holding the calling
/// instance to the exclusive entry as its device.
enum ExclusiveServices {
    static func install(into t: inout mmulab_host) {
        t.make_exclusive = { ctx, addressSpace, address, owner, pfn, errorOut in
            let host = HostContext.from(ctx)
            guard let pfn else { return fail(errorOut, MMULAB_ERR_INVALID, "make_exclusive: no pfn to fill") }
            guard address % 4096 == 0 else {
                return fail(errorOut, MMULAB_ERR_INVALID, "make_exclusive: 0x\(String(address, radix: 16)) is not page aligned")
            }
            guard let space = host.space(addressSpace) else {
                return fail(errorOut, MMULAB_ERR_INVALID, "make_exclusive: no address space \(addressSpace)")
            }
            do throws(MemoryError) {
                let t = try space.makeExclusive(address, device: host.device, owner: owner == 0 ? nil : OwnerCookie(owner))
                pfn.pointee = mmulab_pfn(
                    address: t.address, pfn: t.frame.rawValue, generation: t.generation,
                    flags: UInt32(MMULAB_PFN_WRITABLE) | UInt32(MMULAB_PFN_EXCLUSIVE))
                return mmulab_status(MMULAB_OK)
            } catch {
                return fail(errorOut, status(for: error), "make_exclusive 0x\(String(address, radix: 16)): \(error)")
            }
        }
    }
}
