import CDevicePluginABI
import CPluginOops

#if canImport(Glibc)
import Glibc
#endif

/// A plugin that passed every check: its descriptor and what it declared.
public struct LoadedPlugin: @unchecked Sendable, CustomStringConvertible {
    // @unchecked: the descriptor lives in the plugin image, which is never
    // unloaded, and is only read.
    public let path: String
    public let name: String
    public let version: String
    public let summary: String
    public let capabilities: UInt32
    /// The ABI minor both sides agreed on.
    public let minor: Int
    let descriptor: UnsafePointer<mmulab_device_plugin>

    public var capabilityNames: [String] {
        var names: [String] = []
        if capabilities & UInt32(MMULAB_CAP_CHANGE_PTE) != 0 { names.append("changePTE") }
        if capabilities & UInt32(MMULAB_CAP_YOUNG) != 0 { names.append("youngTracking") }
        if capabilities & UInt32(MMULAB_CAP_SECONDARY_TLB) != 0 { names.append("secondaryTLB") }
        if capabilities & UInt32(MMULAB_CAP_FAILS_NONBLOCKING) != 0 { names.append("failsNonBlocking") }
        return names
    }

    /// Which optional operations the plugin provides.
    public var optionalOperations: [String] {
        var names: [String] = []
        if descriptor.pointee.prefetch != nil { names.append("prefetch") }
        if descriptor.pointee.migrate != nil { names.append("migrate") }
        if descriptor.pointee.stat_count != nil && descriptor.pointee.stat_get != nil { names.append("stats") }
        if descriptor.pointee.control != nil { names.append("control") }
        return names
    }

    public var description: String { "\(name) \(version) (ABI 1.\(minor)) at \(path)" }

    /// A copy of the descriptor as the host reads it (tests).
    var descriptorCopy: mmulab_device_plugin { descriptor.pointee }
}

/// Loads plugins with `dlopen` and checks them against ABI 1.
///
/// Plugins are never `dlclose`d: a Swift image cannot be unloaded safely,
/// and the descriptor must outlive every instance.
public enum PluginLoader {
    /// The highest ABI minor this host implements.
    public static let hostMinor = UInt16(MMULAB_ABI_MINOR)
    static let entrySymbol = MMULAB_DEVICE_PLUGIN_ENTRY_NAME

    /// The size a descriptor must have: everything up to the last required
    /// operation (`access`).
    static let requiredDescriptorSize: Int =
        MemoryLayout<mmulab_device_plugin>.offset(of: \mmulab_device_plugin.access)! + MemoryLayout<UnsafeRawPointer>.size

    /// Loads and validates the plugin at `path`.
    public static func load(_ path: String) -> Result<LoadedPlugin, PluginLoadError> {
        guard access(path, R_OK) == 0 else { return .failure(.notFound(path: path)) }
        dlerror()
        guard let handle = dlopen(path, RTLD_NOW | RTLD_LOCAL) else {
            let reason = dlerror().map { String(cString: $0) } ?? "unknown dlopen error"
            return .failure(.notASharedObject(path: path, reason: reason))
        }
        guard let symbol = dlsym(handle, entrySymbol) else {
            return .failure(.noEntrySymbol(path: path, symbol: entrySymbol))
        }
        let entry = unsafeBitCast(symbol, to: mmulab_device_plugin_entry.self)
        // Its code, so a crash on a thread of the plugin's own is still its oops.
        mmulab_oops_note_image(symbol, path)
        var negotiated: UInt16 = 0
        guard let descriptor = entry(hostMinor, &negotiated) else { return .failure(.entryRefused(path: path)) }
        return validate(descriptor, negotiated: negotiated, path: path)
    }

    static func validate(
        _ descriptor: UnsafePointer<mmulab_device_plugin>, negotiated: UInt16, path: String
    ) -> Result<LoadedPlugin, PluginLoadError> {
        // Read the size first, alone: nothing else is known to exist.
        let size = Int(UnsafeRawPointer(descriptor).load(as: UInt32.self))
        let headerSize = MemoryLayout<mmulab_device_plugin>.offset(of: \mmulab_device_plugin.name)!
        guard size >= headerSize else {
            return .failure(.descriptorTooSmall(path: path, size: size, required: requiredDescriptorSize))
        }
        let major = Int(descriptor.pointee.abi_major)
        guard major == Int(MMULAB_ABI_MAJOR) else {
            return .failure(.abiMajorMismatch(path: path, found: major, expected: Int(MMULAB_ABI_MAJOR)))
        }
        guard size >= requiredDescriptorSize else {
            return .failure(.descriptorTooSmall(path: path, size: size, required: requiredDescriptorSize))
        }
        guard negotiated <= hostMinor else {
            return .failure(.minorNegotiationFailed(path: path, offered: Int(hostMinor), chosen: Int(negotiated)))
        }
        // Read only what the plugin declared: a descriptor of an older
        // minor is shorter, and the fields past its size are absent.
        var d = mmulab_device_plugin()
        withUnsafeMutableBytes(of: &d) { target in
            target.copyMemory(from: UnsafeRawBufferPointer(start: descriptor, count: min(size, MemoryLayout<mmulab_device_plugin>.size)))
        }
        let required: [(String, Bool)] = [
            ("create", d.create != nil), ("destroy", d.destroy != nil), ("attach", d.attach != nil),
            ("detach", d.detach != nil), ("access", d.access != nil),
        ]
        if let missing = required.first(where: { !$0.1 }) {
            return .failure(.missingOperation(path: path, operation: missing.0))
        }
        // Optional operations beyond the declared size are absent: `d`
        // holds zeros (NULL) past `size`. A pointer cut by the size is too.
        var copy = d
        let fullSize = MemoryLayout<mmulab_device_plugin>.size
        if size < fullSize {
            func cut(_ field: PartialKeyPath<mmulab_device_plugin>) -> Bool {
                size < MemoryLayout<mmulab_device_plugin>.offset(of: field)! + MemoryLayout<UnsafeRawPointer>.size
            }
            if cut(\mmulab_device_plugin.prefetch) { copy.prefetch = nil }
            if cut(\mmulab_device_plugin.migrate) { copy.migrate = nil }
            if cut(\mmulab_device_plugin.stat_count) { copy.stat_count = nil }
            if cut(\mmulab_device_plugin.stat_get) { copy.stat_get = nil }
            if cut(\mmulab_device_plugin.control) { copy.control = nil }
        }
        let stored = UnsafeMutablePointer<mmulab_device_plugin>.allocate(capacity: 1)
        stored.initialize(to: copy)  // kept for the process's lifetime, like the image
        return .success(
            LoadedPlugin(
                path: path, name: string(d.name) ?? "(unnamed)", version: string(d.version) ?? "?",
                summary: string(d.description) ?? "", capabilities: d.capabilities, minor: Int(negotiated),
                descriptor: UnsafePointer(stored)))
    }

    private static func string(_ pointer: UnsafePointer<CChar>?) -> String? { pointer.map { String(cString: $0) } }
}
