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
    weak var context: HostContext?
    let destroyed = Atomic<Bool>(false)
    /// `lock` calls by the holder that were refused (it held the lock
    /// already): its next as many `unlock`s pair with them and release
    /// nothing, so the outer critical section stays locked. Touched only by
    /// the holding thread.
    var refusedRecursion = 0
    /// Under a controlled scheduler, calls are checked for foreign threads.
    let deterministic: Bool

    init(sleeping: SleepingLock?, spin: SpinLock?, name: String, context: HostContext) {
        self.sleeping = sleeping
        self.spin = spin
        self.name = name
        self.context = context
        deterministic = context.deterministic
    }

    /// `HostContext.checkCaller` for the instance that made it.
    @inline(__always)
    func checkCaller(_ service: StaticString) {
        if deterministic, let context { context.checkCaller(service) }
    }

    var isHeldByCurrentThread: Bool { spin?.isHeldByCurrentThread ?? sleeping!.isHeldByCurrentThread }
    var isLocked: Bool { spin?.isLocked ?? sleeping!.isLocked }

    func report(_ service: String, _ problem: String) {
        if let context { context.report(service, problem) } else { HostContext.reportUnattributed(service, problem) }
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
    weak var context: HostContext?
    let destroyed = Atomic<Bool>(false)
    let deterministic: Bool

    init(_ completion: Completion, context: HostContext) {
        self.completion = completion
        self.context = context
        deterministic = context.deterministic
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
            if let context = completion.context { context.report("\(service)", problem) } else { HostContext.reportUnattributed("\(service)", problem) }
            return nil
        }
        if completion.deterministic, let context = completion.context { context.checkCaller(service) }
        return completion
    }
}

/// The synchronisation services: locks (checked: NULL, destroyed, taken
/// twice by one thread, unlocked by a thread that does not hold them,
/// destroyed while held) and completions (NULL, destroyed).
enum LockServices {
    static func install(into t: inout mmulab_host) {
        t.lock_create = { ctx, name, kind in
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
        t.lock_destroy = { handle in
            guard let handle else { return HostContext.reportUnattributed("lock_destroy", "the lock is NULL") }
            let lock = Unmanaged<HostLock>.fromOpaque(UnsafeRawPointer(handle)).takeUnretainedValue()
            guard !lock.destroyed.exchange(true, ordering: .acquiringAndReleasing) else {
                return lock.report("lock_destroy", "'\(lock.name)' was destroyed already")
            }
            if lock.isLocked { lock.report("lock_destroy", "'\(lock.name)' is destroyed while it is held") }
            // The plugin's reference goes to the quarantine: a later use is caught, not a use after free.
            if let context = lock.context { context.quarantine.keep(lock) }
            Unmanaged<HostLock>.fromOpaque(UnsafeRawPointer(handle)).release()
        }
        t.lock = { handle in
            guard let lock = HostLock.checked(handle, "lock") else { return }
            guard !lock.isHeldByCurrentThread else {
                lock.refusedRecursion += 1
                return lock.report("lock", "'\(lock.name)' is already held by this thread: taking it again would deadlock (not taken)")
            }
            // The site is the plugin's code: lock-order reports name the callback instead.
            if let spin = lock.spin { spin.lock(file: "plugin code", line: 0) } else { lock.sleeping!.lock(file: "plugin code", line: 0) }
        }
        t.trylock = { handle in
            guard let lock = HostLock.checked(handle, "trylock") else { return false }
            return lock.spin?.tryLock(file: "plugin code", line: 0) ?? lock.sleeping!.tryLock(file: "plugin code", line: 0)
        }
        t.unlock = { handle in
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

        t.completion_create = { ctx, name in
            guard let host = HostContext.from(ctx, "completion_create") else { return nil }
            let completion = Completion(name.map { String(cString: $0) } ?? "completion", domain: host.machine.sync)
            return OpaquePointer(Unmanaged.passRetained(HostCompletion(completion, context: host)).toOpaque())
        }
        t.completion_destroy = { handle in
            guard let handle else { return HostContext.reportUnattributed("completion_destroy", "the completion is NULL") }
            let completion = Unmanaged<HostCompletion>.fromOpaque(UnsafeRawPointer(handle)).takeUnretainedValue()
            guard !completion.destroyed.exchange(true, ordering: .acquiringAndReleasing) else {
                let problem = "completion '\(completion.completion.name)' was destroyed already"
                if let context = completion.context { context.report("completion_destroy", problem) } else {
                    HostContext.reportUnattributed("completion_destroy", problem)
                }
                return
            }
            if let context = completion.context { context.quarantine.keep(completion) }
            Unmanaged<HostCompletion>.fromOpaque(UnsafeRawPointer(handle)).release()
        }
        t.completion_complete = { handle in HostCompletion.checked(handle, "completion_complete")?.completion.complete() }
        t.completion_complete_all = { handle in HostCompletion.checked(handle, "completion_complete_all")?.completion.completeAll() }
        t.completion_reinit = { handle in HostCompletion.checked(handle, "completion_reinit")?.completion.reinit() }
        t.completion_wait = { handle, timeout in
            guard let completion = HostCompletion.checked(handle, "completion_wait")?.completion else { return false }
            if timeout == 0 {
                completion.wait()
                return true
            }
            return completion.wait(timeout: .nanoseconds(Int64(clamping: timeout)))
        }
    }
}
