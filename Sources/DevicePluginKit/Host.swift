// Public, not re-exported: the kit's API keeps the C types it wraps where it
// has no Swift type of its own (`PFN` is `mmulab_pfn`; ``Host`` holds the
// `mmulab_host` table; the export glue returns the `mmulab_device_plugin`
// descriptor). A plugin that names C symbols (MMULAB_CAP_*, MMULAB_EVENT_*,
// MMULAB_ERR_*, the entry's return type) imports CDevicePluginABI itself.
public import CDevicePluginABI

#if canImport(Glibc)
import Glibc
#endif

/// A failed plugin operation: an ABI status code and a message for the host.
public struct PluginError: Error, Sendable, Hashable, CustomStringConvertible {
    public let status: Int32
    public let message: String

    public init(status: Int32, _ message: String) {
        self.status = status
        self.message = message
    }

    public static func invalid(_ message: String) -> PluginError { PluginError(status: Int32(MMULAB_ERR_INVALID), message) }
    public static func fault(_ message: String) -> PluginError { PluginError(status: Int32(MMULAB_ERR_FAULT), message) }
    public static func noMemory(_ message: String) -> PluginError { PluginError(status: Int32(MMULAB_ERR_NO_MEMORY), message) }
    public static func busy(_ message: String) -> PluginError { PluginError(status: Int32(MMULAB_ERR_BUSY), message) }

    public var description: String { "status \(status): \(message)" }

    /// Writes the error into a C error record (if there is one) and returns its status.
    func report(into error: UnsafeMutablePointer<mmulab_error>?) -> mmulab_status {
        guard let error else { return status }
        error.pointee.status = status
        withUnsafeMutableBytes(of: &error.pointee.message) { buffer in
            let bytes = Array(message.utf8.prefix(buffer.count - 1))
            buffer.copyBytes(from: bytes)
            buffer[bytes.count] = 0
        }
        return status
    }

    init(_ error: mmulab_error) {
        var copy = error.message
        let text = withUnsafeBytes(of: &copy) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
        self.init(status: error.status, text)
    }
}

/// A translation from the primary MMU (the C `mmulab_pfn`).
public typealias PFN = mmulab_pfn

extension mmulab_pfn {
    public var isWritable: Bool { flags & UInt32(MMULAB_PFN_WRITABLE) != 0 }
}

/// The host's services, as a plugin written in Swift sees them. Each method
/// is one call through the C table; the contexts are those of the header.
public struct Host: @unchecked Sendable {
    // @unchecked: the table is the host's and stays valid until destroy.
    public let table: UnsafePointer<mmulab_host>
    var context: UnsafeMutableRawPointer? { table.pointee.context }

    public init(_ table: UnsafePointer<mmulab_host>) { self.table = table }

    public enum LogLevel: Int32, Sendable { case debug = 0, info, warning, error, misbehaving }

    /// [any-thread]
    public func log(_ level: LogLevel, _ message: String) {
        message.withCString { table.pointee.log(context, level.rawValue, $0) }
    }

    /// [blockable] Sleeps (a violation where sleeping is forbidden).
    public func sleep(nanoseconds: UInt64) { table.pointee.sleep_ns(context, nanoseconds) }

    /// [any-thread] Whether the calling thread may not sleep now.
    public var isNonBlockable: Bool { table.pointee.in_non_blockable(context) }

    public func makeLock(_ name: String, spin: Bool) -> HostLock {
        let handle = name.withCString { table.pointee.lock_create(context, $0, spin ? Int32(MMULAB_LOCK_SPIN.rawValue) : Int32(MMULAB_LOCK_SLEEPING.rawValue))! }
        return HostLock(host: self, handle: handle)
    }

    /// [blockable] Subscribes `subscription` to `[start, start + length)` of
    /// an address space. The host keeps it until `removeInterval`.
    public func insertInterval(
        addressSpace: UInt64, start: UInt64, length: UInt64, _ subscription: IntervalSubscription
    ) throws(PluginError) {
        precondition(subscription.handle == nil, "the interval subscription is already inserted")
        subscription.host = self  // before the host can call back
        var handle: OpaquePointer? = nil
        var error = mmulab_error()
        let status = table.pointee.interval_insert(
            context, addressSpace, start, length, &IntervalSubscription.ops,
            Unmanaged.passRetained(subscription).toOpaque(), &handle, &error)
        guard status == mmulab_status(MMULAB_OK), let handle else {
            Unmanaged.passUnretained(subscription).release()
            throw PluginError(error)
        }
        subscription.handle = handle  // a callback may already have set the same value
    }

    /// [blockable] Removes an interval subscription; no callback runs after this returns.
    public func removeInterval(_ subscription: IntervalSubscription) {
        guard let handle = subscription.handle else { return }
        table.pointee.interval_remove(context, handle)
        subscription.handle = nil
        Unmanaged.passUnretained(subscription).release()
    }

    /// [blockable] Subscribes `subscription` to a whole address space. The
    /// host keeps it until `unsubscribe`.
    public func subscribe(addressSpace: UInt64, _ subscription: SpaceSubscription) throws(PluginError) {
        precondition(subscription.handle == nil, "the subscription is already registered")
        var handle: OpaquePointer? = nil
        var error = mmulab_error()
        let status = withUnsafePointer(to: &subscription.ops) { ops in
            table.pointee.subscribe(context, addressSpace, ops, Unmanaged.passRetained(subscription).toOpaque(), &handle, &error)
        }
        guard status == mmulab_status(MMULAB_OK), let handle else {
            Unmanaged.passUnretained(subscription).release()
            throw PluginError(error)
        }
        subscription.handle = handle
    }

    /// [blockable] Ends a subscription; no callback runs after this returns.
    public func unsubscribe(_ subscription: SpaceSubscription) {
        guard let handle = subscription.handle else { return }
        table.pointee.unsubscribe(context, handle)
        subscription.handle = nil
        Unmanaged.passUnretained(subscription).release()
    }

    /// [blockable] `hmm_range_fault`: translations of `[start, start + length)`.
    public func faultRange(addressSpace: UInt64, start: UInt64, length: UInt64, write: Bool) throws(PluginError) -> [PFN] {
        try translations(table.pointee.fault_range, addressSpace, start, length, write)
    }

    /// [blockable] `pin_user_pages`: faults `[start, start + length)` in
    /// and pins every page; the frames stay (unreclaimable, unmovable) until
    /// `unpin`. All or nothing: on error no page stays pinned. `longTerm`
    /// (ABI 1.5, FOLL_LONGTERM, for a pin held indefinitely): pages in
    /// movable memory move out of it first, so use only the pfns this
    /// returns.
    public func pin(addressSpace: UInt64, start: UInt64, length: UInt64, write: Bool, longTerm: Bool = false) throws(PluginError) -> [PFN] {
        try translations(table.pointee.pin, addressSpace, start, length, write, extra: longTerm ? UInt32(MMULAB_PIN_LONGTERM) : 0)
    }

    /// One call of `fault_range` or `pin` (same signature).
    private func translations(
        _ service: @convention(c) (
            UnsafeMutableRawPointer?, UInt64, UInt64, UInt64, UInt32, UnsafeMutablePointer<mmulab_pfn>?,
            UnsafeMutablePointer<mmulab_error>?
        ) -> mmulab_status,
        _ addressSpace: UInt64, _ start: UInt64, _ length: UInt64, _ write: Bool, extra: UInt32 = 0
    ) throws(PluginError) -> [PFN] {
        var pfns = [PFN](repeating: PFN(), count: Int(length / 4096))
        var error = mmulab_error()
        let status = pfns.withUnsafeMutableBufferPointer { buffer in
            service(context, addressSpace, start, length, (write ? UInt32(MMULAB_FAULT_WRITE) : 0) | extra, buffer.baseAddress, &error)
        }
        guard status == mmulab_status(MMULAB_OK) else { throw PluginError(error) }
        return pfns
    }

    /// [any-thread] `unpin_user_pages_dirty_lock`: returns pins; `dirty`:
    /// the device wrote the pages, so they are marked dirty first.
    public func unpin(_ pfns: [PFN], dirty: Bool) {
        guard !pfns.isEmpty else { return }
        pfns.withUnsafeBufferPointer { table.pointee.unpin(context, $0.baseAddress, UInt64($0.count), dirty) }
    }

    /// [any-thread] The device wrote the page.
    public func setDirty(_ pfn: PFN) {
        var copy = pfn
        table.pointee.set_dirty(context, &copy)
    }

    /// [any-thread] The device used the page.
    public func markAccessed(_ pfn: PFN) {
        var copy = pfn
        table.pointee.mark_accessed(context, &copy)
    }

    /// [any-thread] Checked DMA read through `pfn`.
    public func dmaRead(addressSpace: UInt64, _ pfn: PFN, into buffer: UnsafeMutableRawBufferPointer) {
        var copy = pfn
        table.pointee.dma_read(context, addressSpace, &copy, buffer.baseAddress, UInt32(buffer.count))
    }

    /// [any-thread] Checked DMA write through `pfn`.
    public func dmaWrite(addressSpace: UInt64, _ pfn: PFN, from buffer: UnsafeRawBufferPointer) {
        var copy = pfn
        table.pointee.dma_write(context, addressSpace, &copy, buffer.baseAddress, UInt32(buffer.count))
    }
}

/// A host lock (sleeping or spin). Destroyed with the object.
public final class HostLock: @unchecked Sendable {
    // @unchecked: the handle is the host's; the host synchronises it.
    let host: Host
    let handle: OpaquePointer
    init(host: Host, handle: OpaquePointer) {
        self.host = host
        self.handle = handle
    }
    deinit { host.table.pointee.lock_destroy(handle) }

    public func lock() { host.table.pointee.lock(handle) }
    public func tryLock() -> Bool { host.table.pointee.trylock(handle) }
    public func unlock() { host.table.pointee.unlock(handle) }

    @inlinable
    public func withLock<R, E: Error>(_ body: () throws(E) -> R) throws(E) -> R {
        lock()
        defer { unlock() }
        return try body()
    }
}

// MARK: - Page-table pages, shrinkers, device memory

extension mmulab_pfn {
    /// The page lives in the caller's own device memory (ABI 1.1).
    public var isDevicePrivate: Bool { flags & UInt32(MMULAB_PFN_DEVICE_PRIVATE) != 0 }
    /// Taken with `makeExclusive` (ABI 1.5).
    public var isExclusive: Bool { flags & UInt32(MMULAB_PFN_EXCLUSIVE) != 0 }
    /// Part of a huge page's PMD mapping (ABI 1.5): its aligned 2 MiB may be
    /// mapped with one 2 MiB entry.
    public var isHuge: Bool { flags & UInt32(MMULAB_PFN_HUGE) != 0 }
}

extension Host {
    /// Whether the host offers device-exclusive pages (ABI 1.5).
    public var offersExclusive: Bool {
        table.pointee.abi_minor >= 5
            && Int(table.pointee.struct_size) >= MemoryLayout<mmulab_host>.offset(of: \.make_exclusive)! + MemoryLayout<UnsafeRawPointer>.size
    }

    /// [blockable] `make_device_exclusive`: takes the page at `address`
    /// exclusive for this instance; the invalidation carries `owner` (skip
    /// it). Install the returned translation only if no invalidation raced.
    public func makeExclusive(addressSpace: UInt64, address: UInt64, owner: UInt64) throws(PluginError) -> PFN {
        guard offersExclusive else { throw PluginError(status: Int32(MMULAB_ERR_NOT_SUPPORTED), "the host offers no device-exclusive pages (ABI < 1.5)") }
        var pfn = PFN()
        var error = mmulab_error()
        guard table.pointee.make_exclusive(context, addressSpace, address, owner, &pfn, &error) == mmulab_status(MMULAB_OK) else {
            throw PluginError(error)
        }
        return pfn
    }
}

extension Host {
    /// Whether the host offers `lookup_range` (ABI 1.6).
    public var offersLookup: Bool {
        table.pointee.abi_minor >= 6
            && Int(table.pointee.struct_size) >= MemoryLayout<mmulab_host>.offset(of: \.lookup_range)! + MemoryLayout<UnsafeRawPointer>.size
    }

    /// [blockable] `hmm_range_fault` without `HMM_PFN_REQ_FAULT` (ABI 1.6):
    /// the translations of `[start, start + length)` as the primary maps
    /// them now, nil where nothing is mapped; faults nothing in. Install
    /// them only if no invalidation raced (`readRetry`).
    public func lookupRange(addressSpace: UInt64, start: UInt64, length: UInt64) throws(PluginError) -> [PFN?] {
        guard offersLookup else { throw PluginError(status: Int32(MMULAB_ERR_NOT_SUPPORTED), "the host offers no lookup_range (ABI < 1.6)") }
        var pfns = [PFN](repeating: PFN(), count: Int(length / 4096))
        var error = mmulab_error()
        let status = pfns.withUnsafeMutableBufferPointer { buffer in
            table.pointee.lookup_range(context, addressSpace, start, length, buffer.baseAddress, &error)
        }
        guard status == mmulab_status(MMULAB_OK) else { throw PluginError(error) }
        return pfns.map { $0.flags & UInt32(MMULAB_PFN_NONE) != 0 ? nil : $0 }
    }
}

extension Host {
    /// Whether the host offers page references (`page_get` / `page_put`, ABI 1.6).
    public var offersPageReferences: Bool {
        table.pointee.abi_minor >= 6
            && Int(table.pointee.struct_size) >= MemoryLayout<mmulab_host>.offset(of: \.page_put)! + MemoryLayout<UnsafeRawPointer>.size
    }

    /// [any-thread] `get_page` (ABI 1.6): a reference on the frame behind a
    /// current translation; the frame is not freed until `putPage`. Returns
    /// the translation to DMA through while it is held
    /// (`MMULAB_PFN_REFERENCED` set). Never sleeps.
    public func getPage(_ pfn: PFN) throws(PluginError) -> PFN {
        guard offersPageReferences else { throw PluginError(status: Int32(MMULAB_ERR_NOT_SUPPORTED), "the host offers no page references (ABI < 1.6)") }
        var held = pfn
        let status = withUnsafePointer(to: pfn) { table.pointee.page_get(context, $0) }
        guard status == mmulab_status(MMULAB_OK) else { throw PluginError(status: status, "page_get refused pfn#\(pfn.pfn)") }
        held.flags |= UInt32(MMULAB_PFN_REFERENCED)
        return held
    }

    /// [any-thread] `put_page` (ABI 1.6): puts a reference `getPage` took.
    public func putPage(_ pfn: PFN) {
        guard offersPageReferences else { return }
        withUnsafePointer(to: pfn) { table.pointee.page_put(context, $0) }
    }
}

/// A device memory the host made for this instance (ABI 1.1).
public struct DeviceMemoryHandle: @unchecked Sendable {
    // @unchecked: the handle is the host's, valid until the instance is destroyed.
    let handle: OpaquePointer
}

extension Host {
    /// [any-thread] Whether the calling thread is in reclaim.
    public var isInReclaim: Bool { table.pointee.in_reclaim(context) }

    /// [any-thread][reclaim] A page for the device's own page tables, or nil
    /// (in reclaim only a bounded reserve exists: cope, do not crash).
    public func allocatePageTablePage() -> UInt64? {
        var pfn: UInt64 = 0
        return table.pointee.alloc_page_table_page(context, &pfn) == mmulab_status(MMULAB_OK) ? pfn : nil
    }

    public func freePageTablePage(_ pfn: UInt64) { table.pointee.free_page_table_page(context, pfn) }

    /// [blockable] Registers `shrinker` with the host's reclaim until `unregisterShrinker`.
    public func registerShrinker(_ name: String, _ shrinker: Shrinker) throws(PluginError) {
        precondition(shrinker.handle == nil, "the shrinker is already registered")
        var handle: OpaquePointer? = nil
        let status = name.withCString {
            table.pointee.shrinker_register(context, $0, &Shrinker.ops, Unmanaged.passRetained(shrinker).toOpaque(), &handle)
        }
        guard status == mmulab_status(MMULAB_OK), let handle else {
            Unmanaged.passUnretained(shrinker).release()
            throw PluginError(status: status, "shrinker_register failed")
        }
        shrinker.handle = handle
    }

    /// [blockable] No shrinker callback runs after this returns.
    public func unregisterShrinker(_ shrinker: Shrinker) {
        guard let handle = shrinker.handle else { return }
        table.pointee.shrinker_unregister(context, handle)
        shrinker.handle = nil
        Unmanaged.passUnretained(shrinker).release()
    }

    /// Whether the host offers device-private memory (ABI 1.1).
    public var offersDeviceMemory: Bool {
        table.pointee.abi_minor >= 1
            && Int(table.pointee.struct_size) >= MemoryLayout<mmulab_host>.offset(of: \.device_memory_evict)! + MemoryLayout<UnsafeRawPointer>.size
    }

    /// [blockable] `pages` pages of simulated VRAM; migrations into it announce `owner`.
    public func makeDeviceMemory(_ name: String, pages: UInt64, owner: UInt64) throws(PluginError) -> DeviceMemoryHandle {
        guard offersDeviceMemory else { throw PluginError(status: Int32(MMULAB_ERR_NOT_SUPPORTED), "the host offers no device memory (ABI 1.0)") }
        var handle: OpaquePointer? = nil
        var error = mmulab_error()
        let status = name.withCString { table.pointee.device_memory_create(context, $0, pages, owner, &handle, &error) }
        guard status == mmulab_status(MMULAB_OK), let handle else { throw PluginError(error) }
        return DeviceMemoryHandle(handle: handle)
    }

    /// [any-thread] Pages of `memory` in use.
    public func usedPages(of memory: DeviceMemoryHandle) -> UInt64 { table.pointee.device_memory_used(memory.handle) }

    /// [blockable] Moves what can move of the range into `memory`; returns
    /// how many pages moved. The invalidation announces `memory`'s owner:
    /// drop your own translations of the range before calling.
    public func migrateToDevice(_ memory: DeviceMemoryHandle, addressSpace: UInt64, start: UInt64, length: UInt64) throws(PluginError) -> UInt64 {
        try migrate(table.pointee.migrate_to_device, memory, addressSpace, start, length)
    }

    /// [blockable] Brings the range's pages in `memory` home; returns how
    /// many moved. The invalidation announces `memory`'s owner (ABI 1.3,
    /// as Linux's `migrate_to_ram`): drop your own translations of the
    /// range before calling; every other device is told.
    public func migrateToHost(_ memory: DeviceMemoryHandle, addressSpace: UInt64, start: UInt64, length: UInt64) throws(PluginError) -> UInt64 {
        try migrate(table.pointee.migrate_to_host, memory, addressSpace, start, length)
    }

    /// One call of `migrate_to_device` or `migrate_to_host` (same signature).
    private func migrate(
        _ service: @convention(c) (
            UnsafeMutableRawPointer?, OpaquePointer?, UInt64, UInt64, UInt64, UnsafeMutablePointer<UInt64>?,
            UnsafeMutablePointer<mmulab_error>?
        ) -> mmulab_status,
        _ memory: DeviceMemoryHandle, _ addressSpace: UInt64, _ start: UInt64, _ length: UInt64
    ) throws(PluginError) -> UInt64 {
        var moved: UInt64 = 0
        var error = mmulab_error()
        guard service(context, memory.handle, addressSpace, start, length, &moved, &error) == mmulab_status(MMULAB_OK)
        else { throw PluginError(error) }
        return moved
    }

    /// [blockable] Evicts up to `pages` of the oldest pages of `memory`; returns how many moved.
    public func evict(_ memory: DeviceMemoryHandle, pages: UInt64) -> UInt64 {
        table.pointee.device_memory_evict(context, memory.handle, pages)
    }
}
