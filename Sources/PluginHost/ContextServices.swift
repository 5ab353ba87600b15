import CDevicePluginABI
import LabSync

/// The services about the calling context: the log, sleeping, and whether
/// the calling thread may sleep or is in reclaim.
enum ContextServices {
    /// Puts each service below into the host table. The closures only forward: Swift forms a
    /// C function pointer from a literal closure or a global function, not from a static method.
    static func install(into t: inout mmulab_host) {
        t.log = { ContextServices.log($0, $1, $2) }
        t.sleep_ns = { ContextServices.sleepNanoseconds($0, $1) }
        t.in_non_blockable = { ContextServices.inNonBlockable($0) }
        t.in_reclaim = { ContextServices.inReclaim($0) }
    }

    /// [any-thread] `log`: one line in the instance's log. A level outside
    /// `mmulab_log_level` is logged as info and reported; a NULL message too.
    static func log(_ ctx: UnsafeMutableRawPointer?, _ level: Int32, _ message: UnsafePointer<CChar>?) {
        guard let host = HostContext.from(ctx, "log") else { return }
        let known = PluginLogEntry.Level(rawValue: level)
        if known == nil { host.report("log", "level \(level) is not an mmulab_log_level (0...4); logged as info") }
        if message == nil { host.report("log", "the message is NULL") }
        host.log.record(
            PluginLogEntry(plugin: host.pluginName, level: known ?? .info, message: message.map { String(cString: $0) } ?? ""))
    }

    /// [blockable] `sleep_ns`: sleeps through the machine's synchronisation
    /// layer (a context violation where sleeping is forbidden).
    static func sleepNanoseconds(_ ctx: UnsafeMutableRawPointer?, _ ns: UInt64) {
        guard let host = HostContext.from(ctx, "sleep_ns") else { return }
        host.machine.sync.sleep(for: .nanoseconds(Int64(clamping: ns)))
    }

    /// [any-thread] `in_non_blockable`: whether the calling thread may not sleep now.
    static func inNonBlockable(_: UnsafeMutableRawPointer?) -> Bool { ExecutionContext.isCurrentNonBlockable }

    /// [any-thread] `in_reclaim`: whether the calling thread is in reclaim.
    static func inReclaim(_: UnsafeMutableRawPointer?) -> Bool { ExecutionContext.isCurrentInReclaim }
}
