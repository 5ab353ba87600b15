public import LabSync

/// Something a plugin did wrong at the boundary, found by the host: a bad
/// argument to a host service (answered `MMULAB_ERR_INVALID`, or ignored
/// for a service that returns nothing: never a crash), something left
/// behind when a binding was detached or the instance destroyed (the host
/// removes it), or a lock still held when a callback returned.
public struct PluginContractViolation: Sendable, CustomStringConvertible {
    public enum Kind: String, Sendable, Hashable {
        /// A host service was called with something wrong.
        case misuse = "plugin contract violation"
        /// A subscription, interval, shrinker, pin, page-table page or
        /// device memory outlived the binding or instance that made it.
        case leak = "left behind"
        /// A callback or plugin operation returned holding a host lock.
        case lockHeldAtReturn = "lock held when a callback returns"
    }

    public let kind: Kind
    /// The instance, as the run names it (`gpu#0`), or the plugin's name.
    public let plugin: String
    /// The host service misused (`unpin`), or for a leak where it was
    /// found (`detach`, `destroy`), or the callback that returned holding a lock.
    public let service: String
    /// What was wrong, in a sentence.
    public let problem: String
    /// For a leak or a held lock, what kind of thing, without numbers
    /// (`interval left registered after detach`): one bug for many.
    public let summary: String?
    /// The plugin operation or callback the thread was in, if any.
    public let during: String?
    /// The binding involved, described, if any.
    public let binding: String?
    public let thread: ThreadIdentity

    public init(
        kind: Kind, plugin: String, service: String, problem: String, summary: String? = nil, during: String?, binding: String?,
        thread: ThreadIdentity
    ) {
        self.kind = kind
        self.plugin = plugin
        self.service = service
        self.problem = problem
        self.summary = summary
        self.during = during
        self.binding = binding
        self.thread = thread
    }

    public var description: String {
        var text = "\(plugin): \(service): \(problem)"
        if let binding { text += " (binding \(binding))" }
        if let during, during != service { text += ", in \(during)" }
        return text + ", on thread \(thread)"
    }
}

/// Misuses the host could not pin on an instance: a service called with a
/// NULL context on a thread that is in no call of any plugin (a plugin's
/// own thread). Process-wide, as the C calls that lead here are.
public enum UnattributedViolations {
    public static let log = ReportLog<PluginContractViolation>(capacity: 1_000)
}
