#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif
import CLabSyncShims
import Synchronization

/// An object that can name a non-blockable section it opened (a spin lock,
/// a shrinker). Asked only when a violation is reported.
public protocol SectionSubject: AnyObject {
    var sectionSubjectName: String { get }
}

/// Why the current thread may not sleep.
///
/// Sections nest; the innermost one is named in a violation report, the way
/// the kernel names the lock or the `preempt_disable` that made a context
/// atomic. The value is trivially copyable so that opening a section costs a
/// few stores: it holds static strings and, for a subject object, an
/// unretained reference that must outlive the section (a lock outlives its
/// critical section; a shrinker outlives its scan).
public struct NonBlockableSection: @unchecked Sendable {
    // @unchecked: `object` is only dereferenced on the owning thread while
    // the section is open (see `described`).
    /// What kind of section: "spin lock", "non-blockable invalidation", ...
    public let reason: StaticString
    private let text: StaticString
    private unowned(unsafe) let object: (any SectionSubject)?
    /// Where the section was entered.
    public let site: SourceSite

    public init(reason: StaticString, subject: StaticString = "", site: SourceSite) {
        self.reason = reason
        self.text = subject
        self.object = nil
        self.site = site
    }

    public init(reason: StaticString, subject: any SectionSubject, site: SourceSite) {
        self.reason = reason
        self.text = ""
        self.object = subject
        self.site = site
    }

    /// A self-contained copy for reports, safe to keep after the section closed.
    public var described: SectionDescription {
        SectionDescription(reason: "\(reason)", subject: object?.sectionSubjectName ?? "\(text)", site: site)
    }
}

/// A non-blockable section as reported: plain strings, safe to keep.
public struct SectionDescription: Sendable, Hashable, CustomStringConvertible {
    public let reason: String
    public let subject: String
    public let site: String

    init(reason: String, subject: String, site: SourceSite) {
        self.reason = reason
        self.subject = subject
        self.site = site.description
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
/// where sleeping is forbidden is caught (callbacks may sleep only where the
/// caller allows it: see `ContextViolation` and docs/CONTRACT.md, rule 4).
///
/// The context is thread-confined: it is reached only through `current` (or
/// the static helpers), and a thread only ever touches its own. It is not
/// `Sendable` on purpose.
public final class ExecutionContext {
    /// Deepest nesting of non-blockable sections; deeper is a bug in the caller.
    public static let maximumDepth = 64

    /// The calling thread's identity.
    public private(set) var thread: ThreadIdentity
    /// A number for the thread, unique in the process and never 0 (the
    /// default thread id of `Scheduler.currentThreadID`).
    public let serial: UInt64
    // Thread-confined state: the exclusivity checks the runtime would make
    // on these class properties cannot fail, and they sat on every lock
    // acquisition (measured: a fifth of a notifier dispatch).
    @exclusivity(unchecked) private var depth = 0
    @exclusivity(unchecked) private var reclaimDepthStorage = 0
    /// The callee the thread runs now (`CalleeFrame`), if any.
    @exclusivity(unchecked) private(set) var callee: CalleeFrame? = nil
    /// The locks the thread holds, for lock-order validation (made on first
    /// use; unmanaged, so reaching it costs no reference counting).
    @exclusivity(unchecked) var lockOrderState: Unmanaged<LockOrderThread>? = nil
    private let sections: UnsafeMutablePointer<NonBlockableSection>

    private init() {
        let tid = ThreadIdentity.currentTID()
        thread = ThreadIdentity(tid: tid, name: "thread-\(tid)")
        serial = nextContextSerial.add(1, ordering: .relaxed).newValue
        sections = .allocate(capacity: Self.maximumDepth)
    }

    deinit {
        sections.deallocate()
        lockOrderState?.release()
    }

    /// The context of the calling thread, created on first use.
    public static var current: ExecutionContext {
        if let raw = mmulab_current_context() {
            return Unmanaged<ExecutionContext>.fromOpaque(raw).takeUnretainedValue()
        }
        // The pthread key owns the reference (its destructor drops it when
        // the thread ends); the thread-local word is the fast way to it.
        let context = ExecutionContext()
        let raw = Unmanaged.passRetained(context).toOpaque()
        pthread_setspecific(contextKey, raw)
        mmulab_set_current_context(raw)
        return context
    }

    /// Runs `body` on the calling thread's context without retaining it.
    @inline(__always)
    static func withCurrent<R>(_ body: (ExecutionContext) -> R) -> R {
        guard let raw = mmulab_current_context() else { return body(current) }
        return Unmanaged<ExecutionContext>.fromOpaque(raw)._withUnsafeGuaranteedRef(body)
    }

    /// Opens a non-blockable section on the calling thread (fast path for
    /// locks and dispatchers). Pair with `exitCurrentNonBlockable()`.
    public static func enterCurrentNonBlockable(_ section: NonBlockableSection) {
        withCurrent { $0.enterNonBlockable(section) }
    }

    /// Closes the calling thread's innermost non-blockable section.
    public static func exitCurrentNonBlockable() {
        withCurrent { $0.exitNonBlockable() }
    }

    /// Whether the calling thread may not sleep now.
    public static var isCurrentNonBlockable: Bool { withCurrent { $0.isNonBlockable } }

    /// The calling thread's serial (read without retaining the context).
    public static var currentSerial: UInt64 { withCurrent { $0.serial } }

    /// Whether the calling thread is in reclaim context (read without retaining the context).
    public static var isCurrentInReclaim: Bool { withCurrent { $0.isInReclaim } }

    /// Whether the thread may not sleep now.
    public var isNonBlockable: Bool { depth > 0 }

    /// How many non-blockable sections are open on this thread.
    public var nonBlockableDepth: Int { depth }

    /// The innermost open non-blockable section, if any.
    public var innermostSection: NonBlockableSection? { depth > 0 ? sections[depth - 1] : nil }

    /// Sets the thread's callee and returns the previous one.
    @inline(__always)
    func swapCallee(_ frame: CalleeFrame?) -> CalleeFrame? {
        let previous = callee
        callee = frame
        return previous
    }

    /// Renames the calling thread for reports (done by `SyncDomain.spawnThread`).
    public func setThreadName(_ name: String) {
        thread = ThreadIdentity(tid: thread.tid, name: name)
    }

    /// Names the calling thread as a controlled scheduler's `index`-th.
    func setScheduledIdentity(name: String, index: Int) {
        thread = ThreadIdentity(tid: thread.tid, name: name, scheduledIndex: index)
    }

    /// Opens a non-blockable section. Pair with `exitNonBlockable()`.
    public func enterNonBlockable(_ section: NonBlockableSection) {
        precondition(depth < Self.maximumDepth, "non-blockable sections nested deeper than \(Self.maximumDepth)")
        sections[depth] = section
        depth += 1
    }

    /// Closes the innermost non-blockable section.
    public func exitNonBlockable() {
        precondition(depth > 0, "exitNonBlockable without a matching enterNonBlockable")
        depth -= 1
    }

    /// Runs `body` inside a non-blockable section: any sleep, wait or
    /// sleeping-lock acquisition in it is a context violation.
    @inlinable
    public func withNonBlockableSection<R, E: Error>(
        reason: StaticString,
        subject: StaticString = "",
        file: StaticString = #fileID, line: UInt = #line,
        _ body: () throws(E) -> R
    ) throws(E) -> R {
        enterNonBlockable(NonBlockableSection(reason: reason, subject: subject, site: SourceSite(file: file, line: line)))
        defer { exitNonBlockable() }
        return try body()
    }

    /// The same, naming an object as the section's subject.
    @inlinable
    public func withNonBlockableSection<R, E: Error>(
        reason: StaticString,
        subject: any SectionSubject,
        file: StaticString = #fileID, line: UInt = #line,
        _ body: () throws(E) -> R
    ) throws(E) -> R {
        enterNonBlockable(NonBlockableSection(reason: reason, subject: subject, site: SourceSite(file: file, line: line)))
        defer { exitNonBlockable() }
        return try body()
    }

    /// Runs `body` in reclaim context (Linux's `PF_MEMALLOC`): allocators that
    /// honour it serve only from their bounded reserve (Andrea Arcangeli,
    /// linux-kernel/kvm-devel, 2008-01-24, "Re: [kvm-devel] [PATCH] export
    /// notifier #1").
    @inlinable
    public func withReclaimContext<R, E: Error>(_ body: () throws(E) -> R) throws(E) -> R {
        enterReclaim()
        defer { exitReclaim() }
        return try body()
    }

    /// Whether the thread is in reclaim context.
    public var isInReclaim: Bool { reclaimDepthStorage > 0 }

    public func enterReclaim() { reclaimDepthStorage += 1 }
    public func exitReclaim() {
        precondition(reclaimDepthStorage > 0, "exitReclaim without a matching enterReclaim")
        reclaimDepthStorage -= 1
    }
}

/// Serials of execution contexts, above 2^32 so they never meet a
/// controlled scheduler's thread ids (its thread indices + 1).
private let nextContextSerial = Atomic<UInt64>(1 << 32)

/// The thread-local slot that holds each thread's `ExecutionContext`.
/// Created once; its destructor drops the context when the thread ends.
private let contextKey: pthread_key_t = {
    var key = pthread_key_t()
    let status = pthread_key_create(&key) { raw in
        guard let raw else { return }
        // Cleared first: a later destructor that takes a lock finds no
        // context and makes a fresh one (which this key then drops in turn).
        if mmulab_current_context() == raw { mmulab_set_current_context(nil) }
        Unmanaged<ExecutionContext>.fromOpaque(raw).release()
    }
    precondition(status == 0, "pthread_key_create failed: \(status)")
    return key
}()
