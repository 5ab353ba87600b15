import CDevicePluginABI
import CPluginOops
import LabSync
import MMUNotifier
@testable import PluginHost
import Synchronization
import Testing
import VirtualMemory

/// Counts the callbacks it is told of (the observed path of a plugin call).
private final class CountingObserver: CallbackObserver, @unchecked Sendable {
    let returned = Atomic<Int>(0)
    var sectionSubjectName: String { "test observer" }
    func callbackReturned(_ callback: PluginCallback, nanoseconds: UInt64) { returned.add(1, ordering: .relaxed) }
    func youngAnswered(addressSpace: AddressSpaceID, start: UInt64, end: UInt64, askedAt: Duration, young: Bool) {}
}

/// The thread's call frames (what the oops prints and what misuses are
/// attributed by) after they became plain stores in thread-local storage.
@Suite("Call frames")
struct CallFramesTests {
    /// An instance of the counting C plugin attached to one page, and its subscriber.
    private func counting(observer: (any CallbackObserver)?) throws -> (PluginInstance, CSubscriber, InvalidationRange, [AnyObject]) {
        let plugin = try load(fixture("countingc"))
        let machine = makeMachine()
        let space = machine.makeAddressSpace()
        let base = try space.map(length: 4096, kind: .anonymousPrivate)
        let instance = try PluginInstance.create(plugin, machine: machine, observer: observer).get()
        _ = try instance.attach(addressSpace: space.id, start: base, length: 4096)
        let subscriber = try #require(instance.subscribers.first as? CSubscriber)
        let range = InvalidationRange(addressSpace: space.id, start: base, end: base + 4096, event: .vmscan, blockable: false)
        return (instance, subscriber, range, [machine, space])
    }

    @Test("a callback leaves the frame stack as it found it, observed or not")
    func balanced() throws {
        let observer = CountingObserver()
        for watched in [nil, observer] as [CountingObserver?] {
            let (instance, subscriber, range, keep) = try counting(observer: watched)
            #expect(subscriber.site.observed == (watched != nil))
            let before = CallFrames.depth
            for _ in 0..<100 {
                #expect(subscriber.invalidateRangeStart(range) == .ok)
                subscriber.invalidateRangeEnd(range)
            }
            #expect(CallFrames.depth == before)
            withExtendedLifetime(keep) { instance.destroy() }
        }
        #expect(observer.returned.load(ordering: .relaxed) == 200, "the observed instance timed every start and end")
    }

    @Test("a range callback's frame names the instance, the callback and the range, by value, while the plugin runs")
    func rangeFrame() throws {
        let (instance, subscriber, range, keep) = try counting(observer: nil)
        var r = cRange(range, minor: subscriber.minor)
        let frames = ThreadFrames()
        let seen = withUnsafeMutablePointer(to: &r) { r in
            callPlugin(subscriber.site, frames, PluginCallback.invalidateRangeStart.name, timing: .invalidateRangeStart, range: r) {
                () -> mmulab_oops_frame? in
                r.pointee.start = 0  // what the plugin does to its view cannot change the frame
                return CallFrames.innermostPluginCall?.pointee
            }
        }
        let frame = try #require(seen)
        #expect(String(cString: try #require(frame.plugin)) == String(cString: instance.context.reportLabel))
        #expect(String(cString: try #require(frame.operation)) == "invalidate_range_start")
        #expect(frame.service == nil && frame.instance == UnsafeRawPointer(instance.context.opaque))
        #expect(frame.subject == UInt32(MMULAB_OOPS_SUBJECT_RANGE.rawValue))
        #expect(frame.a == range.addressSpace.rawValue && frame.b == range.start && frame.c == range.end)
        #expect(frame.event == UInt32(range.event.rawValue) && frame.d == 0, "non-blockable")
        #expect(frame.binding == 0 && frame.object == nil && frame.sequence == 0)
        #expect(CallFrames.depth == frames.depth)
        withExtendedLifetime(keep) { instance.destroy() }
    }

    @Test("frames past the sixteenth are counted, not kept, and the kept ones stay intact")
    func deepStack() throws {
        let (instance, subscriber, range, keep) = try counting(observer: nil)
        let before = CallFrames.depth
        func nest(_ level: Int) {
            let frames = ThreadFrames()
            frames.push(
                mmulab_oops_frame(
                    plugin: subscriber.site.label, operation: CallFrames.cString("nested"), service: nil, instance: subscriber.site.instance,
                    object: nil, binding: UInt64(level), subject: 0, event: 0, a: 0, b: 0, c: 0, d: 0, sequence: 0))
            defer { frames.pop() }
            if level < 20 {
                nest(level + 1)
                return
            }
            #expect(CallFrames.depth == before + 20)
            // The deepest kept frame is the sixteenth pushed; the rest went to the spare slot.
            #expect(mmulab_oops_frame_at(15)?.pointee.binding == UInt64(16 - Int(before)))
            #expect(mmulab_oops_frame_at(16) == nil)
            #expect(CallFrames.currentBinding(of: instance.context).binding != 0)
            #expect(subscriber.invalidateRangeStart(range) == .ok, "a call at depth 21 still works")
        }
        nest(1)
        #expect(CallFrames.depth == before)
        withExtendedLifetime(keep) { instance.destroy() }
    }
}
