import CDevicePluginABI
import LabSync

/// The thread services of ABI 1.4 (`thread_create`, `thread_join`, `yield`,
/// `now_ns`, `thread_id`): a plugin's own threads are started through the
/// machine's scheduler, so they are scheduled (deterministically, when the
/// lab runs with `--schedule`) with the lab's actors, and its clock is the
/// host's.
enum ThreadServices {
    /// Longest thread name kept (the rest is cut).
    static let maximumNameLength = 48

    /// Puts each service below into the host table. The closures only forward: Swift forms a
    /// C function pointer from a literal closure or a global function, not from a static method.
    static func install(into t: inout mmulab_host) {
        t.thread_create = { ThreadServices.threadCreate($0, $1, $2, $3, $4, $5) }
        t.thread_join = { ThreadServices.threadJoin($0, $1) }
        t.yield = { ThreadServices.yield($0) }
        t.now_ns = { ThreadServices.nowNanoseconds($0) }
        t.thread_id = { ThreadServices.threadID($0) }
    }

    /// [blockable] `thread_create`: a thread of the machine's scheduler named for
    /// the plugin (the name cut to `maximumNameLength`); entry and out are required.
    static func threadCreate(
        _ ctx: UnsafeMutableRawPointer?, _ name: UnsafePointer<CChar>?, _ entry: (@convention(c) (UnsafeMutableRawPointer?) -> Void)?,
        _ argument: UnsafeMutableRawPointer?, _ out: UnsafeMutablePointer<OpaquePointer?>?, _ error: UnsafeMutablePointer<mmulab_error>?
    ) -> mmulab_status {
        guard let host = HostContext.from(ctx, "thread_create") else { return mmulab_status(MMULAB_ERR_INVALID) }
        guard let entry, let out else {
            return fail(error, MMULAB_ERR_INVALID, "thread_create: entry and out are required")
        }
        let label = String((name.map { String(cString: $0) } ?? "thread").prefix(ThreadServices.maximumNameLength))
        // The argument crosses to the new thread as the plugin's to synchronise.
        let bits = UInt(bitPattern: argument)
        let handle = host.machine.sync.spawnThread(named: "\(host.pluginName) \(label)") {
            entry(UnsafeMutableRawPointer(bitPattern: bits))
        }
        let raw = Unmanaged.passRetained(PluginThread(handle, name: label)).toOpaque()
        host.threads.withLock { $0.append(UInt(bitPattern: raw)) }
        out.pointee = OpaquePointer(raw)
        return mmulab_status(MMULAB_OK)
    }

    /// [blockable] `thread_join`: only a thread this instance made and has not
    /// joined (otherwise logged as misbehaving, not a crash).
    static func threadJoin(_ ctx: UnsafeMutableRawPointer?, _ handle: OpaquePointer?) {
        guard let host = HostContext.from(ctx, "thread_join") else { return }
        guard let handle else { return host.misbehaving("thread_join with a NULL thread") }
        // Only a handle this instance made and has not joined is touched
        // (by address: a joined one is freed): a second join is reported, not a crash.
        let id = UInt(bitPattern: UnsafeRawPointer(handle))
        let known = host.threads.withLock { list -> Bool in
            guard let index = list.firstIndex(of: id) else { return false }
            list.remove(at: index)
            return true
        }
        guard known else { return host.misbehaving("thread_join of a thread it did not make or already joined") }
        let thread = Unmanaged<PluginThread>.fromOpaque(UnsafeRawPointer(handle)).takeRetainedValue()
        thread.handle.join()
    }

    /// [any-thread] `yield`: lets another thread run; never sleeps.
    static func yield(_ ctx: UnsafeMutableRawPointer?) {
        guard let host = HostContext.from(ctx, "yield") else { return }
        host.machine.sync.yield()
    }

    /// [any-thread] `now_ns`: the machine's clock (virtual under --schedule).
    static func nowNanoseconds(_ ctx: UnsafeMutableRawPointer?) -> UInt64 {
        guard let host = HostContext.from(ctx, "now_ns") else { return 0 }
        let (seconds, attoseconds) = host.machine.sync.now().components
        return UInt64(max(seconds, 0)) &* 1_000_000_000 &+ UInt64(max(attoseconds, 0) / 1_000_000_000)
    }

    /// [any-thread] `thread_id`: the calling thread's number, never 0.
    static func threadID(_ ctx: UnsafeMutableRawPointer?) -> UInt64 {
        guard let host = HostContext.from(ctx, "thread_id") else { return 0 }
        return host.machine.sync.currentThreadID
    }
}

/// What a C thread handle stands for.
final class PluginThread: @unchecked Sendable {
    // @unchecked: immutable.
    let handle: any ThreadHandle
    let name: String
    init(_ handle: any ThreadHandle, name: String) {
        self.handle = handle
        self.name = name
    }
}

extension HostContext {
    /// Under a controlled scheduler, a call from a thread the scheduler did
    /// not make escapes the schedule: the run cannot be reproduced. Reported
    /// once per thread, naming the plugin, in its log at MISBEHAVING.
    @inline(__always)
    func checkCaller(_ service: StaticString) {
        guard deterministic, !machine.sync.schedulesCurrentThread else { return }
        reportForeignCaller(service)
    }

    private func reportForeignCaller(_ service: StaticString) {
        let thread = ThreadIdentity.current
        let first = foreignCallers.withLock { seen -> Bool in
            guard !seen.contains(thread.tid) else { return false }
            seen.append(thread.tid)
            return true
        }
        guard first else { return }
        misbehaving(
            "called the host (\(service)) from thread \(thread), which the host did not make: under --schedule "
                + "the run cannot be reproduced (make threads with host->thread_create)")
    }

    /// Logs a broken rule at MISBEHAVING.
    func misbehaving(_ message: String) {
        log.record(PluginLogEntry(plugin: pluginName, level: .misbehaving, message: message))
    }

    /// What the plugin did from outside the schedule (its MISBEHAVING
    /// reports of foreign callers), and the threads it left unjoined.
    var scheduleEscapes: [String] {
        log.snapshot.filter { $0.level == .misbehaving && $0.message.contains("which the host did not make") }.map(\.description)
    }
}
