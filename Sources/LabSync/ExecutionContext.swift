#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// Why the current thread may not sleep.
///
/// Sections nest; the innermost one is named in a violation report, the way
/// the kernel names the lock or the `preempt_disable` that made a context atomic.
public struct NonBlockableSection: Sendable, CustomStringConvertible {
    /// What kind of section: "spin lock", "non-blockable invalidation", ...
    public let reason: String
    /// Which instance: a lock's name, an event, a subscriber.
    public let subject: String
    /// Where the section was entered.
    public let site: SourceSite

    public init(reason: String, subject: String, site: SourceSite) {
        self.reason = reason
        self.subject = subject
        self.site = site
    }

    public var description: String {
        subject.isEmpty ? "\(reason) entered at \(site)" : "\(reason) '\(subject)' entered at \(site)"
    }
}

/// The per-thread execution context: the lab's `preempt_count`.
///
/// It knows whether the current thread is inside a non-blockable section (a
/// spin lock is held, a non-blockable invalidation or a secondary-TLB flush is
/// being dispatched) and, if so, why. Every sleeping primitive of this layer
/// asks it before it sleeps (`SyncDomain.mightSleep`), which is how a sleep
/// where sleeping is forbidden is caught (seeds 000 and 001: callbacks may sleep
/// only where the caller allows it).
///
/// The context is thread-confined: it is reached only through `current`, and a
/// thread only ever touches its own. It is not `Sendable` on purpose.
public final class ExecutionContext {
    /// The calling thread's identity.
    public private(set) var thread: ThreadIdentity
    private var sections: [NonBlockableSection] = []
    /// True while the thread is in reclaim (Linux's `PF_MEMALLOC`): allocations
    /// may only come from the bounded reserve (seed 003).
    public private(set) var reclaimDepth = 0

    private init() {
        let tid = ThreadIdentity.currentTID()
        thread = ThreadIdentity(tid: tid, name: "thread-\(tid)")
        sections.reserveCapacity(8)
    }

    /// The context of the calling thread, created on first use.
    public static var current: ExecutionContext {
        if let raw = pthread_getspecific(contextKey) {
            return Unmanaged<ExecutionContext>.fromOpaque(raw).takeUnretainedValue()
        }
        let context = ExecutionContext()
        pthread_setspecific(contextKey, Unmanaged.passRetained(context).toOpaque())
        return context
    }

    /// Whether the thread may not sleep now.
    public var isNonBlockable: Bool { !sections.isEmpty }

    /// How many non-blockable sections are open on this thread.
    public var nonBlockableDepth: Int { sections.count }

    /// The innermost open non-blockable section, if any.
    public var innermostSection: NonBlockableSection? { sections.last }

    /// Renames the calling thread for reports (done by `SyncDomain.spawnThread`).
    public func setThreadName(_ name: String) {
        thread = ThreadIdentity(tid: thread.tid, name: name)
    }

    /// Opens a non-blockable section. Pair with `exitNonBlockable()`.
    public func enterNonBlockable(_ section: NonBlockableSection) {
        sections.append(section)
    }

    /// Closes the innermost non-blockable section.
    public func exitNonBlockable() {
        precondition(!sections.isEmpty, "exitNonBlockable without a matching enterNonBlockable")
        sections.removeLast()
    }

    /// Runs `body` inside a non-blockable section: any sleep, wait or
    /// sleeping-lock acquisition in it is a context violation.
    @inlinable
    public func withNonBlockableSection<R, E: Error>(
        reason: String,
        subject: String = "",
        file: StaticString = #fileID, line: UInt = #line,
        _ body: () throws(E) -> R
    ) throws(E) -> R {
        let site = SourceSite(file: file, line: line)
        enterNonBlockable(NonBlockableSection(reason: reason, subject: subject, site: site))
        defer { exitNonBlockable() }
        return try body()
    }

    /// Runs `body` in reclaim context (Linux's `PF_MEMALLOC`): allocators that
    /// honour it serve only from their bounded reserve.
    @inlinable
    public func withReclaimContext<R, E: Error>(_ body: () throws(E) -> R) throws(E) -> R {
        enterReclaim()
        defer { exitReclaim() }
        return try body()
    }

    /// Whether the thread is in reclaim context.
    public var isInReclaim: Bool { reclaimDepth > 0 }

    public func enterReclaim() { reclaimDepth += 1 }
    public func exitReclaim() {
        precondition(reclaimDepth > 0, "exitReclaim without a matching enterReclaim")
        reclaimDepth -= 1
    }
}

/// The thread-local slot that holds each thread's `ExecutionContext`.
/// Created once; its destructor drops the context when the thread ends.
private let contextKey: pthread_key_t = {
    var key = pthread_key_t()
    let status = pthread_key_create(&key) { raw in
        guard let raw else { return }
        Unmanaged<ExecutionContext>.fromOpaque(raw).release()
    }
    precondition(status == 0, "pthread_key_create failed: \(status)")
    return key
}()
