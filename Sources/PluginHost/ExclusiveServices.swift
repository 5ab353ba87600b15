import CDevicePluginABI
import LabSync
import MMUNotifier
import VirtualMemory

/// The device-exclusive service of ABI 1.5 (`make_exclusive`): a thin
/// translation onto `AddressSpace.makeExclusive`, holding the calling
/// instance to the exclusive entry as its device.
///
/// Its arguments are checked as every service's are: a NULL pfn, an
/// unaligned address or one outside the address space, or a space never
/// made is a misuse (reported, `MMULAB_ERR_INVALID`); a space that has
/// exited is `MMULAB_ERR_KILLED`, a page that kept changing
/// `MMULAB_ERR_BUSY`, an unmapped or read-only one `MMULAB_ERR_FAULT`,
/// none of them a misuse.
///
/// Nothing goes into the instance's ledger: the call hands out no pin, no
/// page lock and no reference (Linux since 6.15 returns the folio locked
/// and referenced, for the driver to unlock and put once its entry is in;
/// the model does both before returning, and the driver's
/// `interval_read_retry` covers the window the lock would have closed).
/// The exclusive entry itself is the primary's, not the instance's: it
/// outlives the binding as in Linux, and the CPU's next access to the page
/// gives it back.
enum ExclusiveServices {
    static func install(into t: inout mmulab_host) {
        t.make_exclusive = { ctx, addressSpace, address, owner, pfn, errorOut in
            guard let host = HostContext.from(ctx, "make_exclusive") else { return mmulab_status(MMULAB_ERR_INVALID) }
            CallFrames.enterService(host, "make_exclusive")
            defer { CallFrames.leave() }
            guard let pfn else { return host.invalid(errorOut, "make_exclusive", "the pfn is NULL") }
            guard address % 4096 == 0, address < AddressSpace.addressLimit else {
                return host.invalid(errorOut, "make_exclusive", "0x\(String(address, radix: 16)) is not a page-aligned address inside the address space")
            }
            let (found, status) = host.space(addressSpace, for: "make_exclusive", errorOut)
            guard let space = found else { return status }
            do throws(MemoryError) {
                let t = try space.makeExclusive(address, device: host.device, owner: owner == 0 ? nil : OwnerCookie(owner))
                pfn.pointee = mmulab_pfn(
                    address: t.address, pfn: t.frame.rawValue, generation: t.generation,
                    flags: UInt32(MMULAB_PFN_WRITABLE) | UInt32(MMULAB_PFN_EXCLUSIVE))
                return mmulab_status(MMULAB_OK)
            } catch {
                if case .invalidArgument(let what) = error { return host.invalid(errorOut, "make_exclusive", what) }
                return fail(errorOut, PluginHost.status(for: error), "make_exclusive 0x\(String(address, radix: 16)): \(error)")
            }
        }
    }
}
