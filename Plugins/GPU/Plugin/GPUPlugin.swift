// The GPU plugin: a simulated GPU MMU in the shape of current hardware
// (drm_gpusvm, xe, amdgpu, nouveau), loaded by mmulab through the plugin ABI.
//
//   GPUPageTable    4 levels, 48-bit VA, 4 KiB and 2 MiB entries
//   DeviceTLB       a non-coherent cache of entries, flushed explicitly
//   FaultHandler    replayable faults, a bounded fault buffer, batched service
//   SVMRange        chunked ranges under per-region interval notifiers, GC
//   GPUVM           one address space's GPU VM: invalidation, fences, access
//   Migration       device-private memory (VRAM) with eviction
//   GPUShrinker     frees idle ranges' mappings, fast-fails when contended
//
// Discovery of real devices goes through libdrm (GPUDeviceDiscovery); with
// no device the plugin says so in its description and runs simulated.

public import CDevicePluginABI
import DevicePluginKit
import GPUDeviceDiscovery
import Synchronization

final class GPU: DevicePlugin {
    /// What `options` may set: `key=value` pairs separated by commas.
    struct Configuration {
        var tlbEntries = 64
        var faultBufferEntries = 32
        /// Pages of simulated VRAM (0: no device-private memory).
        var vramPages = 1024
        /// How long each GPU access keeps its fence before the DMA, in
        /// microseconds: long-running GPU work, for invalidations to meet.
        var workMicroseconds = 0

        init(parsing options: String) throws(PluginError) {
            let given = try PluginOptions(
                options, keys: ["tlb": 1...Int.max, "fault-buffer": 1...Int.max, "vram": 0...Int.max, "work-us": 0...Int.max])
            tlbEntries = given["tlb", default: tlbEntries]
            faultBufferEntries = given["fault-buffer", default: faultBufferEntries]
            vramPages = given["vram", default: vramPages]
            workMicroseconds = given["work-us", default: workMicroseconds]
        }
    }

    static var info: PluginInfo {
        PluginInfo(
            name: "gpu", version: "1.0",
            summary: "Simulated GPU MMU: 4-level page table with 2 MiB entries, TLB, replayable faults, SVM ranges, "
                + "VRAM migration, shrinker. libdrm: \(GPUDiscovery.enumerate())",
            capabilities: UInt32(MMULAB_CAP_FAILS_NONBLOCKING), operations: [.prefetch, .migrate])
    }

    let host: Host
    let configuration: Configuration
    let counters = GPUCounters()
    let faultBuffer: FaultBuffer
    /// The fault handler: one thread services the GPU's faults at a time.
    let faultLock: HostLock
    /// Guards `vms` (a spin lock: the shrinker reads it from reclaim).
    private let vmsLock: HostLock
    private var vms: [UInt64: GPUVM] = [:]
    let mappedRanges = Atomic<Int>(0)
    /// The migration owner of this GPU's VRAM (its identity, never 0).
    let owner: UInt64
    let vram: DeviceMemoryHandle?
    private var shrinker: GPUShrinker?

    init(host: Host, options: String) throws(PluginError) {
        self.host = host
        configuration = try Configuration(parsing: options)
        faultBuffer = FaultBuffer(capacity: configuration.faultBufferEntries, host: host, counters: counters)
        faultLock = host.makeLock("gpu fault handler", spin: false)
        vmsLock = host.makeLock("gpu vms", spin: true)
        owner = UInt64(UInt(bitPattern: ObjectIdentifier(counters)))  // an object's address: unique while it lives, never 0
        vram = configuration.vramPages > 0 && host.offersDeviceMemory
            ? try host.makeDeviceMemory("gpu vram", pages: UInt64(configuration.vramPages), owner: owner) : nil
        let shrinker = GPUShrinker(gpu: self)
        try host.registerShrinker("gpu page tables", shrinker)
        self.shrinker = shrinker
    }

    func liveVMs() -> [GPUVM] { vmsLock.withLock { vms.valuesInKeyOrder } }

    // MARK: - Bindings

    func attach(_ request: BindingRequest) throws(PluginError) -> AnyObject {
        guard request.length > 0, request.start % 4096 == 0, request.length % 4096 == 0,
            request.start + request.length <= GPUPageTable.vaLimit
        else { throw .invalid("a binding must be page aligned, not empty, and inside the GPU's 48-bit space") }
        guard request.deviceAddress == request.start else {
            throw .invalid("shared virtual memory: the GPU address must equal the CPU address (0x\(String(request.start, radix: 16)))")
        }
        guard !request.pinned else { throw .invalid("the GPU maps on demand; pinned bindings are for RDMA without ODP") }
        return try faultLock.withLock { () throws(PluginError) -> GPUBinding in
            let vm = try vm(for: request.addressSpace)
            return try vm.lock.withLock { () throws(PluginError) -> GPUBinding in
                let end = request.start + request.length
                if vm.bindings.contains(where: { !$0.detached && $0.start < end && request.start < $0.end }) {
                    throw .invalid("the binding overlaps another binding of the same address space")
                }
                let binding = GPUBinding(start: request.start, end: end, writable: request.writable, vm: vm)
                vm.bindings.append(binding)
                return binding
            }
        }
    }

    /// The VM for an address space, made with its root table on first use (fault lock held).
    private func vm(for addressSpace: UInt64) throws(PluginError) -> GPUVM {
        if let existing = vmsLock.withLock({ vms[addressSpace] }) { return existing }
        guard let root = host.allocatePageTablePage() else { throw .noMemory("no page for the GPU page table's root") }
        let vm = GPUVM(gpu: self, addressSpace: addressSpace, rootTable: root)
        vmsLock.withLock { vms[addressSpace] = vm }
        return vm
    }

    func detach(_ object: AnyObject) {
        let binding = object as! GPUBinding
        let vm = binding.vm
        faultLock.withLock {
            let (ranges, notifiers) = vm.lock.withLock { () -> ([SVMRange], [SVMNotifier]) in
                binding.detached = true
                let notifiers = binding.notifiers.valuesInKeyOrder
                let ranges = notifiers.flatMap { $0.ranges.valuesInKeyOrder }
                for svm in ranges { vm.zap(svm) }
                binding.notifiers.removeAll()
                vm.garbage.removeAll { svm in ranges.contains { $0 === svm } }
                return (ranges, notifiers)
            }
            vm.waitForFences(ranges)
            for notifier in notifiers { host.removeInterval(notifier) }
            // Its VRAM pages come home: nothing the GPU holds outlives the binding.
            if let vram {
                let home = (try? host.migrateToHost(vram, addressSpace: vm.addressSpace, start: binding.start, length: binding.end - binding.start)) ?? 0
                counters[.migratedToHost].add(home, ordering: .relaxed)
            }
            let last = vm.lock.withLock { () -> Bool in
                vm.bindings.removeAll { $0 === binding }
                return vm.bindings.isEmpty
            }
            if last { tearDown(vm) }
        }
    }

    /// Returns a VM's page table to the host (fault lock held, no bindings left).
    private func tearDown(_ vm: GPUVM) {
        vmsLock.withLock { _ = vms.removeValue(forKey: vm.addressSpace) }
        let pages = vm.lock.withLock { () -> [UInt64] in
            vm.tornDown = true
            defer { vm.tableCache.removeAll() }
            return vm.pageTable.allTablePages() + vm.tableCache
        }
        for page in pages { host.freePageTablePage(page) }
    }

    func shutdown() {
        if let shrinker { host.unregisterShrinker(shrinker) }
        shrinker = nil
        for vm in liveVMs() { faultLock.withLock { tearDown(vm) } }
    }

    // MARK: - Access, prefetch

    func access(_ object: AnyObject, deviceAddress: UInt64, write: Bool, buffer: UnsafeMutableRawBufferPointer) throws(PluginError) {
        let binding = object as! GPUBinding
        guard binding.contains(deviceAddress) else { throw .fault("GPU address 0x\(String(deviceAddress, radix: 16)) is outside the binding") }
        guard !write || binding.writable else { throw .fault("write through a read-only binding") }
        try binding.vm.access(binding, deviceAddress, write: write, buffer)
    }

    /// An atomic: through an entry the GPU took exclusive (ABI 1.5).
    func atomic(_ object: AnyObject, deviceAddress: UInt64, buffer: UnsafeMutableRawBufferPointer) throws(PluginError) {
        let binding = object as! GPUBinding
        guard binding.contains(deviceAddress) else { throw .fault("GPU address 0x\(String(deviceAddress, radix: 16)) is outside the binding") }
        guard binding.writable else { throw .fault("atomic through a read-only binding") }
        guard host.offersExclusive else { return try binding.vm.access(binding, deviceAddress, write: true, buffer) }
        try binding.vm.access(binding, deviceAddress, write: true, atomic: true, buffer)
    }

    /// Posts a fault for every page of the range not mapped yet and services
    /// them as one batch (ibv_advise_mr's GPU cousin: xe's prefetch ioctl).
    func prefetch(_ object: AnyObject, deviceAddress: UInt64, length: UInt64) throws(PluginError) {
        let binding = object as! GPUBinding
        let (start, end) = try window(binding, deviceAddress, length)
        let vm = binding.vm
        var address = start
        while address < end {
            if vm.lock.withLock({ vm.installedEntry(address) == nil }) {
                faultBuffer.push(GPUFault(vm: vm, binding: binding, address: address, write: false))
            }
            address += 4096
        }
        serviceFaults()
        if let error = faultBuffer.takeError(vm, start) { throw error }
    }

    /// Services what the fault buffer holds, as one batch (the fault handler).
    func serviceFaults() {
        faultLock.withLock {
            let batch = faultBuffer.drain()
            guard !batch.isEmpty else { return }
            counters[.faultBatches].add(1, ordering: .relaxed)
            counters[.batchedFaults].add(UInt64(batch.count), ordering: .relaxed)
            // By VM, the VMs in address-space order (a replay services them alike).
            var byVM: [UInt64: [GPUFault]] = [:]
            for fault in batch { byVM[fault.vm.addressSpace, default: []].append(fault) }
            for faults in byVM.valuesInKeyOrder where !faults[0].vm.tornDown { faults[0].vm.service(faults) }
        }
    }

    func window(_ binding: GPUBinding, _ address: UInt64, _ length: UInt64) throws(PluginError) -> (UInt64, UInt64) {
        guard address % 4096 == 0, length > 0, length % 4096 == 0, address >= binding.start, address + length <= binding.end else {
            throw .invalid("range 0x\(String(address, radix: 16)) + \(length) must be page aligned and inside the binding")
        }
        return (address, address + length)
    }

    var statistics: [(name: String, value: UInt64)] {
        var all = counters.all
        if let vram { all.append(("vram pages used", host.usedPages(of: vram))) }
        return all
    }
}

// The one export line.
@_cdecl("mmulab_device_plugin_v1")
public func gpuPluginEntry(_ hostMinor: UInt16, _ negotiated: UnsafeMutablePointer<UInt16>?) -> UnsafePointer<mmulab_device_plugin>? {
    DevicePluginExport.entry(GPU.self, hostMinor, negotiated)
}
