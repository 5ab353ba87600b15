/// Every way a plugin can be wrong, each with what to do about it.
public enum PluginLoadError: Error, Sendable, Hashable, CustomStringConvertible {
    /// The file does not exist or cannot be read.
    case notFound(path: String)
    /// `dlopen` refused it: not a shared object, wrong architecture, a
    /// missing dependency. `reason` is what the dynamic loader said.
    case notASharedObject(path: String, reason: String)
    /// It does not export `mmulab_device_plugin_v1`.
    case noEntrySymbol(path: String, symbol: String)
    /// The entry returned no descriptor.
    case entryRefused(path: String)
    /// The descriptor is smaller than ABI 1.0 requires.
    case descriptorTooSmall(path: String, size: Int, required: Int)
    /// The descriptor declares another major version.
    case abiMajorMismatch(path: String, found: Int, expected: Int)
    /// The plugin chose a minor version the host did not offer.
    case minorNegotiationFailed(path: String, offered: Int, chosen: Int)
    /// A required operation is NULL.
    case missingOperation(path: String, operation: String)
    /// `create` failed.
    case createFailed(path: String, status: Int32, message: String)

    public var path: String {
        switch self {
        case .notFound(let p), .notASharedObject(let p, _), .noEntrySymbol(let p, _), .entryRefused(let p),
            .descriptorTooSmall(let p, _, _), .abiMajorMismatch(let p, _, _), .minorNegotiationFailed(let p, _, _),
            .missingOperation(let p, _), .createFailed(let p, _, _):
            p
        }
    }

    public var description: String {
        switch self {
        case .notFound(let path):
            "\(path): no such file, or it cannot be read"
        case .notASharedObject(let path, let reason):
            "\(path): not a loadable shared object (\(reason))"
        case .noEntrySymbol(let path, let symbol):
            "\(path): does not export \(symbol); a plugin exports it with C linkage (see Examples/)"
        case .entryRefused(let path):
            "\(path): the plugin's entry returned no descriptor for this host"
        case .descriptorTooSmall(let path, let size, let required):
            "\(path): descriptor is \(size) bytes, ABI 1.0 needs at least \(required)"
        case .abiMajorMismatch(let path, let found, let expected):
            "\(path): built for plugin ABI \(found).x, this host speaks \(expected).x"
        case .minorNegotiationFailed(let path, let offered, let chosen):
            "\(path): chose ABI minor \(chosen), but the host offered at most \(offered)"
        case .missingOperation(let path, let operation):
            "\(path): required operation '\(operation)' is NULL"
        case .createFailed(let path, let status, let message):
            "\(path): create failed with status \(status)" + (message.isEmpty ? "" : ": \(message)")
        }
    }
}
