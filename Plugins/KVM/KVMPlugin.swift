// The KVM plugin: KVM's MMU as a secondary MMU, loaded by mmulab through the
// plugin ABI. It does not use /dev/kvm: the guest is the lab's threads.
//
//   VM           one per address space: memslots, the MMU lock, the
//                notifier (invalidation with an in-progress count and a
//                union range, change_pte, aging, release)
//   EPT          the second-stage entries (accessed/dirty bits), memslots,
//                the reverse map from host frame to entries
//   VCPU         vCPUs (one per calling thread), their TLBs, and the remote
//                TLB flush by request with acknowledgement at exit
//   GuestAccess  a guest access: TLB, EPT walk, EPT violation, the fault
//                path with mmu_invalidate_retry_gfn
//   DirtyLog     dirty logging (KVM_GET_DIRTY_LOG) and the EPT self-check
//
// A binding is a memslot: the device address is its guest-physical base,
// the range its host-virtual backing. `access` is a guest access by the
// calling thread's vCPU at a guest-physical address (any memslot of the VM).

public import CDevicePluginABI
import DevicePluginKit
import Synchronization

final class KVM: DevicePlugin {
    struct Configuration {
        /// Whether VMs declare change_pte and skip start/end of ksm events.
        var changePTE = true
        /// Threads that may act as vCPUs over a VM's life.
        var vcpus = 64
        var tlbEntries = 64
        /// A testing aid: blockable invalidations sleep this long between
        /// their zap and their TLB flush, widening the window in which a
        /// racing invalidation must still not let a stale TLB line outlive
        /// the page.
        var flushDelayMicroseconds: UInt64 = 0

        init(parsing options: String) throws(PluginError) {
            let given = try PluginOptions(
                options, keys: ["change-pte": 0...1, "vcpus": 1...1024, "tlb-entries": 1...4096, "flush-delay-us": 0...1_000_000])
            changePTE = given["change-pte", default: 1] == 1
            vcpus = given["vcpus", default: vcpus]
            tlbEntries = given["tlb-entries", default: tlbEntries]
            flushDelayMicroseconds = UInt64(given["flush-delay-us", default: 0])
            guard tlbEntries & (tlbEntries - 1) == 0 else { throw .invalid("option tlb-entries must be a power of two") }
        }
    }

    static var info: PluginInfo {
        PluginInfo(
            name: "kvm", version: "1.0",
            summary: "KVM's MMU as a secondary MMU: memslots, an EPT with accessed/dirty bits and a reverse map, vCPUs with "
                + "TLBs flushed by request, mmu_invalidate_retry_gfn, aging (clear/test_young), change_pte for KSM, dirty "
                + "logging. Options: change-pte (0/1), vcpus, tlb-entries, flush-delay-us (testing).",
            capabilities: UInt32(MMULAB_CAP_CHANGE_PTE | MMULAB_CAP_YOUNG), operations: [.control])
    }

    let host: Host
    let configuration: Configuration
    let counters = KVMCounters()
    /// VMs by address space; attach and detach are serialised by this lock.
    private let vmsLock: HostLock
    private var vms: [UInt64: VM] = [:]

    init(host: Host, options: String) throws(PluginError) {
        // vCPUs are found by the host's thread ids, and flushes wait by yielding through the host.
        guard host.offersThreadServices else {
            throw PluginError(status: Int32(MMULAB_ERR_NOT_SUPPORTED), "the KVM plugin needs the host's thread services (ABI 1.4)")
        }
        self.host = host
        configuration = try Configuration(parsing: options)
        vmsLock = host.makeLock("kvm vms", spin: false)
    }

    /// A memslot: the VM of the address space is made (and its notifier
    /// registered) with the first one.
    func attach(_ request: BindingRequest) throws(PluginError) -> AnyObject {
        guard !request.pinned else { throw .invalid("KVM does not pin guest memory: it follows the primary through its notifier") }
        guard request.length > 0, request.start % 4096 == 0, request.length % 4096 == 0, request.deviceAddress % 4096 == 0 else {
            throw .invalid("a memslot must be page aligned and not empty")
        }
        guard request.length / 4096 <= UInt64(UInt32.max), request.deviceAddress <= UInt64.max - request.length else {
            throw .invalid("a memslot must fit the guest-physical address space")
        }
        return try vmsLock.withLock { () throws(PluginError) -> Memslot in
            let vm: VM
            if let existing = vms[request.addressSpace] {
                vm = existing
            } else {
                vm = VM(host: host, addressSpace: request.addressSpace, counters: counters, configuration: configuration)
                try host.subscribe(addressSpace: request.addressSpace, vm)
                vms[request.addressSpace] = vm
                counters[.vms].bump()
            }
            do throws(PluginError) {
                let slot = try vm.addMemslot(
                    firstGFN: request.deviceAddress >> 12, pages: request.length / 4096, hva: request.start, writable: request.writable)
                counters[.memslots].bump()
                return slot
            } catch {
                if vm.mmuLock.withLock({ vm.slots.isEmpty }) { retire(vm) }
                throw error
            }
        }
    }

    /// Deletes the memslot; the VM goes with its last one.
    func detach(_ object: AnyObject) {
        let slot = object as! Memslot
        vmsLock.withLock {
            let vm = slot.vm
            vm.removeMemslot(slot)
            counters[.memslots].drop()
            if vm.mmuLock.withLock({ vm.slots.isEmpty }) { retire(vm) }
        }
    }

    /// Unregisters a VM's notifier (vmsLock held).
    private func retire(_ vm: VM) {
        host.unsubscribe(vm)
        vms.removeValue(forKey: vm.addressSpace)
        counters[.vms].drop()
    }

    func shutdown() {
        vmsLock.withLock { for vm in vms.sorted(by: { $0.key < $1.key }).map(\.value) { retire(vm) } }  // in a fixed order: a replay retires them alike
    }

    func access(_ object: AnyObject, deviceAddress: UInt64, write: Bool, buffer: UnsafeMutableRawBufferPointer) throws(PluginError) {
        let slot = object as! Memslot
        try slot.vm.run(gpa: deviceAddress, write: write, buffer: buffer)
    }

    func control(_ object: AnyObject, command: UInt32, argument: UnsafeMutableRawBufferPointer) throws(PluginError) {
        let slot = object as! Memslot
        guard let known = KVMCommand(rawValue: command) else {
            throw PluginError(status: Int32(MMULAB_ERR_NOT_SUPPORTED), "unknown KVM command \(command) (1 enable, 2 get, 3 disable dirty log; 4 verify)")
        }
        switch known {
        case .enableDirtyLog: slot.vm.enableDirtyLog(slot)
        case .getDirtyLog: try slot.vm.getDirtyLog(slot, into: argument)
        case .disableDirtyLog: slot.vm.disableDirtyLog(slot)
        case .verify: try slot.vm.verify()
        }
    }

    var statistics: [(name: String, value: UInt64)] { counters.all }
}

// The one export line.
@_cdecl("mmulab_device_plugin_v1")
public func kvmPluginEntry(_ hostMinor: UInt16, _ negotiated: UnsafeMutablePointer<UInt16>?) -> UnsafePointer<mmulab_device_plugin>? {
    DevicePluginExport.entry(KVM.self, hostMinor, negotiated)
}
