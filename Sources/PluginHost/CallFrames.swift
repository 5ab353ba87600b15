import CDevicePluginABI
import CPluginOops
public import MMUNotifier
import Synchronization

/// The calling thread's frame stack (`CPluginOops`), reached with one call
/// per call into a plugin: `push` writes the frame with plain stores and
/// counts it with a release store (the oops handler runs on the same
/// thread, so it needs only the frame's stores ordered before the count:
/// a release store is a plain store on x86-64, `stlr` on arm64); `pop`
/// puts the depth back.
/// No allocation, no reference counting, no lock.
struct ThreadFrames {
    let stack: UnsafeMutablePointer<mmulab_oops_stack>
    /// The depth before the push: what `pop` restores.
    let depth: UInt32

    @inline(__always)
    init() {
        stack = mmulab_oops_thread()
        depth = stack.pointee.depth
    }

    @inline(__always)
    private var counter: UnsafeMutablePointer<Atomic<UInt32>> {
        // An aligned UInt32, which Atomic<UInt32> lays out as.
        withUnsafeMutablePointer(to: &stack.pointee.depth) { UnsafeMutableRawPointer($0).assumingMemoryBound(to: Atomic<UInt32>.self) }
    }

    /// Writes `frame` as the thread's next frame (the spare slot past the
    /// last when the stack is full: counted, not kept), lets `describe`
    /// fill in the rest, and only then counts it.
    @inline(__always)
    func push(_ frame: mmulab_oops_frame, describe: (UnsafeMutablePointer<mmulab_oops_frame>) -> Void = { _ in }) {
        let frames = withUnsafeMutablePointer(to: &stack.pointee.frames) { UnsafeMutableRawPointer($0) }
        let slot = frames.assumingMemoryBound(to: mmulab_oops_frame.self) + Int(min(depth, UInt32(MMULAB_OOPS_MAX_FRAMES)))
        slot.pointee = frame
        describe(slot)
        // Release: every store of the frame is ordered before the count.
        counter.pointee.store(depth &+ 1, ordering: .releasing)
    }

    /// Pops the frame `push` pushed (every frame pushed inside the call has been popped).
    @inline(__always)
    func pop() {
        assert(stack.pointee.depth == depth &+ 1, "call frames pushed and popped out of order")
        counter.pointee.store(depth, ordering: .relaxed)
    }
}

/// The calling thread's stack of calls between the host and plugins: one
/// frame per call into a plugin (a callback, attach, access, ...) and per
/// host service a plugin calls, with the instance, what was called and the
/// range or binding being handled. The plugin oops prints it; the services
/// read it to name the plugin, callback and binding of a misuse, and to
/// check that `interval_set_seq` comes from the interval's own callback.
///
/// The frames live in C thread-local storage (`CPluginOops`), written with
/// a few stores, so the crash handler can read them from a signal.
enum CallFrames {
    /// Pushes a frame for a host service a plugin called.
    @inline(__always)
    static func enterService(_ context: HostContext?, _ service: StaticString) {
        _ = mmulab_oops_push(context?.reportLabel, nil, cString(service), context?.opaque)
    }

    @inline(__always)
    static func leave() { mmulab_oops_pop() }

    /// How many frames the calling thread has (stored or not).
    static var depth: UInt32 { mmulab_oops_frame_depth() }

    @inline(__always)
    static func cString(_ text: StaticString) -> UnsafePointer<CChar> {
        UnsafeRawPointer(text.utf8Start).assumingMemoryBound(to: CChar.self)
    }

    /// The innermost frame that is a call into a plugin (not a service), if any.
    static var innermostPluginCall: UnsafePointer<mmulab_oops_frame>? {
        var index = mmulab_oops_frame_depth()
        while index > 0 {
            index -= 1
            guard let frame = mmulab_oops_frame_at(index) else { continue }
            if frame.pointee.service == nil { return frame }
        }
        return nil
    }

    /// The host context of the innermost frame, if any (whom a call with no
    /// usable `ctx` is attributed to).
    static var innermostContext: HostContext? {
        var index = mmulab_oops_frame_depth()
        while index > 0 {
            index -= 1
            guard let frame = mmulab_oops_frame_at(index), let instance = frame.pointee.instance else { continue }
            return Unmanaged<HostContext>.fromOpaque(instance).takeUnretainedValue()
        }
        return nil
    }

    /// The binding number of the innermost frame of `context` that has one
    /// (0: none), and the operation it is in.
    static func currentBinding(of context: HostContext) -> (binding: UInt64, operation: String?) {
        var index = mmulab_oops_frame_depth()
        var operation: String? = nil
        while index > 0 {
            index -= 1
            guard let frame = mmulab_oops_frame_at(index), frame.pointee.instance == context.opaque else { continue }
            if operation == nil, frame.pointee.service == nil, let name = frame.pointee.operation { operation = String(cString: name) }
            if frame.pointee.binding != 0 { return (frame.pointee.binding, operation) }
        }
        return (0, operation)
    }
}

extension UnsafeMutablePointer where Pointee == mmulab_oops_frame {
    /// Describes an invalidation range in the frame.
    @inline(__always)
    func describe(_ range: UnsafePointer<mmulab_range>) {
        pointee.subject = UInt32(MMULAB_OOPS_SUBJECT_RANGE.rawValue)
        pointee.a = range.pointee.address_space
        pointee.b = range.pointee.start
        pointee.c = range.pointee.end
        pointee.event = range.pointee.event
        pointee.d = UInt64(range.pointee.flags & UInt32(MMULAB_RANGE_BLOCKABLE))
    }

    /// Describes part of an address space in the frame.
    @inline(__always)
    func describe(space: UInt64, start: UInt64 = 0, end: UInt64 = 0) {
        pointee.subject = UInt32(MMULAB_OOPS_SUBJECT_SPACE.rawValue)
        pointee.a = space
        pointee.b = start
        pointee.c = end
    }
}

/// The oops a plugin crash prints (see `CPluginOops`): installed by the
/// command line for `mmulab run`, never by the tests.
public enum PluginCrashReport {
    /// The exit status of a run a plugin crashed.
    public static let exitStatus: Int32 = MMULAB_OOPS_EXIT_STATUS

    /// Installs the crash handler (idempotent). Crashes that are not a
    /// plugin's still go to the handler that was there before.
    public static func install() {
        let error = mmulab_oops_install(exitStatus)
        precondition(error == 0, "installing the plugin crash handler failed: errno \(error)")
    }

    /// What the report ends with: the seed and the replay command.
    public static func setContext(_ text: String) { mmulab_oops_set_context(text) }

    /// One event of the run's trail, for the report's last events
    /// (`kind`: 0 start, 1 end, 2 change_pte, 3 young check, 4 release).
    @inline(__always)
    public static func noteEvent(
        nanoseconds: UInt64, kind: UInt8, event: NotifierEvent, blockable: Bool, addressSpace: AddressSpaceID, start: UInt64, end: UInt64
    ) {
        mmulab_oops_note_event(nanoseconds, kind, event.rawValue, blockable, addressSpace.rawValue, start, end)
    }
}
