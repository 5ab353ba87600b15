import CDevicePluginABI
import LabSync
import Synchronization

/// What a C handle to a lock stands for. It stays alive after
/// `lock_destroy` (in the instance's quarantine), so a plugin that uses a
/// destroyed lock is told so instead of reaching freed memory.
final class HostLock: @unchecked Sendable {
    // @unchecked: the locks synchronise themselves; `destroyed` is atomic.
    let sleeping: SleepingLock?
    let spin: SpinLock?
    let name: String
    /// The instance context that made it, while it lives.
    let link: ContextLink<HostContext>
    let destroyed = Atomic<Bool>(false)
    /// `lock` calls by the holder that were refused (it held the lock
    /// already): its next as many `unlock`s pair with them and release
    /// nothing, so the outer critical section stays locked. Touched only by
    /// the holding thread.
    var refusedRecursion = 0
    /// Under a controlled scheduler, the domain whose threads may call (a
    /// call from another thread is reported); nil: calls are not checked.
    let scheduled: SyncDomain?

    init(sleeping: SleepingLock?, spin: SpinLock?, name: String, context: HostContext) {
        self.sleeping = sleeping
        self.spin = spin
        self.name = name
        link = context.link
        scheduled = context.deterministic ? context.machine.sync : nil
    }

    /// `HostContext.checkCaller` for the instance that made it. A scheduled
    /// caller is told apart without reaching the context through `link`.
    @inline(__always)
    func checkCaller(_ service: StaticString) {
        guard let scheduled, !scheduled.schedulesCurrentThread else { return }
        link.withContext { $0.checkCaller(service) }
    }

    var isHeldByCurrentThread: Bool { spin?.isHeldByCurrentThread ?? sleeping!.isHeldByCurrentThread }
    var isLocked: Bool { spin?.isLocked ?? sleeping!.isLocked }

    func report(_ service: String, _ problem: String) {
        if link.withContext({ $0.report(service, problem) }) == nil { HostContext.reportUnattributed(service, problem) }
    }

    /// The lock behind `handle`, or nil (reported) when the handle is NULL
    /// or the lock was destroyed.
    @inline(__always)
    static func checked(_ handle: OpaquePointer?, _ service: StaticString) -> HostLock? {
        guard let handle else {
            HostContext.reportUnattributed("\(service)", "the lock is NULL")
            return nil
        }
        let lock = Unmanaged<HostLock>.fromOpaque(UnsafeRawPointer(handle)).takeUnretainedValue()
        guard !lock.destroyed.load(ordering: .acquiring) else {
            lock.report("\(service)", "'\(lock.name)' was destroyed (lock_destroy) before this call")
            return nil
        }
        lock.checkCaller(service)
        return lock
    }

    /// The class of a plugin's lock for lock-order validation: one per
    /// plugin and name, numbers replaced (`gpu: gpu vm N`), as Linux gives
    /// one class to every lock initialised at one place.
    static func orderClass(plugin: String, name: String) -> String {
        var shaped = ""
        var inNumber = false
        for character in name {
            if character.isASCII && character.isNumber {
                if !inNumber { shaped += "N" }
                inNumber = true
            } else {
                inNumber = false
                shaped.append(character)
            }
        }
        return "\(plugin): \(shaped)"
    }
}

/// What a C handle to a completion stands for; kept like a lock after destroy.
final class HostCompletion: @unchecked Sendable {
    // @unchecked: the completion synchronises itself; `destroyed` is atomic.
    let completion: Completion
    /// As `HostLock.link`.
    let link: ContextLink<HostContext>
    let destroyed = Atomic<Bool>(false)
    /// As `HostLock.scheduled`.
    let scheduled: SyncDomain?

    init(_ completion: Completion, context: HostContext) {
        self.completion = completion
        link = context.link
        scheduled = context.deterministic ? context.machine.sync : nil
    }

    /// Records a misuse against the instance that made it, or as unattributed once that is gone.
    func report(_ service: String, _ problem: String) {
        if link.withContext({ $0.report(service, problem) }) == nil { HostContext.reportUnattributed(service, problem) }
    }

    @inline(__always)
    static func checked(_ handle: OpaquePointer?, _ service: StaticString) -> HostCompletion? {
        guard let handle else {
            HostContext.reportUnattributed("\(service)", "the completion is NULL")
            return nil
        }
        let completion = Unmanaged<HostCompletion>.fromOpaque(UnsafeRawPointer(handle)).takeUnretainedValue()
        guard !completion.destroyed.load(ordering: .acquiring) else {
            let problem = "completion '\(completion.completion.name)' was destroyed (completion_destroy) before this call"
            completion.report("\(service)", problem)
            return nil
        }
        if let scheduled = completion.scheduled, !scheduled.schedulesCurrentThread {
            completion.link.withContext { $0.checkCaller(service) }
        }
        return completion
    }
}

/// The synchronisation services: locks (checked: NULL, destroyed, taken
/// twice by one thread, unlocked by a thread that does not hold them,
/// destroyed while held) and completions (NULL, destroyed).
enum LockServices {
    /// Puts each service below into the host table. The closures only forward: Swift forms a
    /// C function pointer from a literal closure or a global function, not from a static method.
    static func install(into t: inout mmulab_host) {
        t.lock_create = { LockServices.lockCreate($0, $1, $2) }
        t.lock_destroy = { LockServices.lockDestroy($0) }
        t.lock = { LockServices.lock($0) }
        t.trylock = { LockServices.trylock($0) }
        t.unlock = { LockServices.unlock($0) }

        t.completion_create = { LockServices.completionCreate($0, $1) }
        t.completion_destroy = { LockServices.completionDestroy($0) }
        t.completion_complete = { LockServices.completionComplete($0) }
        t.completion_complete_all = { LockServices.completionCompleteAll($0) }
        t.completion_reinit = { LockServices.completionReinit($0) }
        t.completion_wait = { LockServices.completionWait($0, $1) }
    }

    /// `lock_create` (no tag in the header; never sleeps): a sleeping or spin lock
    /// in the instance's lock-order class for its name; a kind that is neither
    /// is reported and makes no lock.
    static func lockCreate(_ ctx: UnsafeMutableRawPointer?, _ name: UnsafePointer<CChar>?, _ kind: Int32) -> OpaquePointer? {
        guard let host = HostContext.from(ctx, "lock_create") else { return nil }
        guard kind == Int32(MMULAB_LOCK_SPIN.rawValue) || kind == Int32(MMULAB_LOCK_SLEEPING.rawValue) else {
            host.report("lock_create", "kind \(kind) is neither MMULAB_LOCK_SLEEPING nor MMULAB_LOCK_SPIN; no lock made")
            return nil
        }
        let label = name.map { String(cString: $0) } ?? "\(host.pluginName) lock"
        let orderClass = HostLock.orderClass(plugin: host.pluginName, name: label)
        let lock = kind == Int32(MMULAB_LOCK_SPIN.rawValue)
            ? HostLock(sleeping: nil, spin: SpinLock(label, domain: host.machine.sync, orderClass: orderClass), name: label, context: host)
            : HostLock(sleeping: SleepingLock(label, domain: host.machine.sync, orderClass: orderClass), spin: nil, name: label, context: host)
        return OpaquePointer(Unmanaged.passRetained(lock).toOpaque())
    }

    /// `lock_destroy` (no tag in the header; never sleeps): the handle goes to
    /// the quarantine, so a later use is reported, not a use after free. NULL, a
    /// second destroy and a destroy while held are reported.
    static func lockDestroy(_ handle: OpaquePointer?) {
        guard let handle else { return HostContext.reportUnattributed("lock_destroy", "the lock is NULL") }
        let lock = Unmanaged<HostLock>.fromOpaque(UnsafeRawPointer(handle)).takeUnretainedValue()
        guard !lock.destroyed.exchange(true, ordering: .acquiringAndReleasing) else {
            return lock.report("lock_destroy", "'\(lock.name)' was destroyed already")
        }
        if lock.isLocked { lock.report("lock_destroy", "'\(lock.name)' is destroyed while it is held") }
        // The plugin's reference goes to the quarantine: a later use is caught, not a use after free.
        lock.link.withContext { $0.quarantine.keep(lock) }
        Unmanaged<HostLock>.fromOpaque(UnsafeRawPointer(handle)).release()
    }

    /// [blockable] `lock` (a spin lock may be taken anywhere): refused, and
    /// reported, when the thread holds it already (it would deadlock); the
    /// next unlock pairs with the refusal.
    static func lock(_ handle: OpaquePointer?) {
        guard let lock = HostLock.checked(handle, "lock") else { return }
        guard !lock.isHeldByCurrentThread else {
            lock.refusedRecursion += 1
            return lock.report("lock", "'\(lock.name)' is already held by this thread: taking it again would deadlock (not taken)")
        }
        // The site is the plugin's code: lock-order reports name the callback instead.
        if let spin = lock.spin { spin.lock(file: "plugin code", line: 0) } else { lock.sleeping!.lock(file: "plugin code", line: 0) }
    }

    /// [any-thread] `trylock`: never sleeps.
    static func trylock(_ handle: OpaquePointer?) -> Bool {
        guard let lock = HostLock.checked(handle, "trylock") else { return false }
        return lock.spin?.tryLock(file: "plugin code", line: 0) ?? lock.sleeping!.tryLock(file: "plugin code", line: 0)
    }

    /// [any-thread] `unlock`: only by the thread that holds the lock (otherwise
    /// reported, not unlocked).
    static func unlock(_ handle: OpaquePointer?) {
        guard let handle else { return HostContext.reportUnattributed("unlock", "the lock is NULL") }
        let lock = Unmanaged<HostLock>.fromOpaque(UnsafeRawPointer(handle)).takeUnretainedValue()
        lock.checkCaller("unlock")
        guard lock.isHeldByCurrentThread else {
            return lock.report("unlock", "'\(lock.name)' is not held by this thread (not unlocked)")
        }
        if lock.refusedRecursion > 0 {
            lock.refusedRecursion -= 1  // pairs with a refused lock: the outer hold stays
            return
        }
        // A destroyed lock its thread still holds is released (so the
        // thread does not stay non-blockable), and reported.
        if lock.destroyed.load(ordering: .acquiring) { lock.report("unlock", "'\(lock.name)' was destroyed while held") }
        if let spin = lock.spin { spin.unlock() } else { lock.sleeping!.unlock() }
    }

    /// `completion_create` (no tag in the header; never sleeps): a completion
    /// kept, like a lock, in the quarantine after destroy.
    static func completionCreate(_ ctx: UnsafeMutableRawPointer?, _ name: UnsafePointer<CChar>?) -> OpaquePointer? {
        guard let host = HostContext.from(ctx, "completion_create") else { return nil }
        let completion = Completion(name.map { String(cString: $0) } ?? "completion", domain: host.machine.sync)
        return OpaquePointer(Unmanaged.passRetained(HostCompletion(completion, context: host)).toOpaque())
    }

    /// `completion_destroy` (no tag in the header; never sleeps): NULL and a
    /// second destroy are reported.
    static func completionDestroy(_ handle: OpaquePointer?) {
        guard let handle else { return HostContext.reportUnattributed("completion_destroy", "the completion is NULL") }
        let completion = Unmanaged<HostCompletion>.fromOpaque(UnsafeRawPointer(handle)).takeUnretainedValue()
        guard !completion.destroyed.exchange(true, ordering: .acquiringAndReleasing) else {
            let problem = "completion '\(completion.completion.name)' was destroyed already"
            completion.report("completion_destroy", problem)
            return
        }
        completion.link.withContext { $0.quarantine.keep(completion) }
        Unmanaged<HostCompletion>.fromOpaque(UnsafeRawPointer(handle)).release()
    }

    /// [any-thread] `completion_complete`: wakes one waiter.
    static func completionComplete(_ handle: OpaquePointer?) {
        HostCompletion.checked(handle, "completion_complete")?.completion.complete()
    }

    /// [any-thread] `completion_complete_all`: wakes every waiter, and later ones pass.
    static func completionCompleteAll(_ handle: OpaquePointer?) {
        HostCompletion.checked(handle, "completion_complete_all")?.completion.completeAll()
    }

    /// `completion_reinit` (no tag in the header; never sleeps): makes it wait again.
    static func completionReinit(_ handle: OpaquePointer?) {
        HostCompletion.checked(handle, "completion_reinit")?.completion.reinit()
    }

    /// [blockable] `completion_wait`: false if `timeout` nanoseconds passed first
    /// (0: waits for ever).
    static func completionWait(_ handle: OpaquePointer?, _ timeout: UInt64) -> Bool {
        guard let completion = HostCompletion.checked(handle, "completion_wait")?.completion else { return false }
        if timeout == 0 {
            completion.wait()
            return true
        }
        return completion.wait(timeout: .nanoseconds(Int64(clamping: timeout)))
    }
}
