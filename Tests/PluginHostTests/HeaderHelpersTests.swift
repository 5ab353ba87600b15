import CDevicePluginABI
import PluginHost
import Testing
import TestSupport
import VirtualMemory

/// The header's `static inline` helpers every C plugin would otherwise
/// write itself: `mmulab_range_clamp` (called here directly) and
/// `mmulab_fail` (variadic, so not callable from Swift: seen through the C
/// mirror, which fails with it).
@Suite("The header's helpers")
struct HeaderHelpersTests {
    /// `mmulab_range_clamp` of [start, end) against the window [0x10000, 0x14000).
    static func clamp(_ start: UInt64, _ end: UInt64) -> (UInt64, UInt64)? {
        var range = mmulab_range()
        range.start = start
        range.end = end
        var first: UInt64 = 0xdead
        var last: UInt64 = 0xdead
        guard mmulab_range_clamp(&range, 0x10000, 0x4000, &first, &last) else {
            #expect(first == 0xdead && last == 0xdead, "nothing written when they do not overlap")
            return nil
        }
        return (first, last)
    }

    @Test func aRangeIsClampedToTheWindow() {
        #expect(Self.clamp(0x12000, 0x13000)! == (0x12000, 0x13000), "inside: unchanged")
        #expect(Self.clamp(0, UInt64.max)! == (0x10000, 0x14000), "a whole-space range: the window")
        #expect(Self.clamp(0x8000, 0x11000)! == (0x10000, 0x11000), "over the start")
        #expect(Self.clamp(0x13000, 0x20000)! == (0x13000, 0x14000), "over the end")
        #expect(Self.clamp(0x14000, 0x15000) == nil, "starting at the window's end (exclusive)")
        #expect(Self.clamp(0x8000, 0x10000) == nil, "ending at the window's start")
        #expect(Self.clamp(0x12000, 0x12000) == nil, "empty")
    }

    @Test func theCMirrorFailsWithTheStatusAndMessageMmulabFailFilled() throws {
        let plugin = try load(mirrorC)
        let machine = makeMachine(frames: 64)
        let space = machine.makeAddressSpace()
        let base = try space.map(length: 4 * 4096, kind: .anonymousPrivate)
        let instance = try PluginInstance.create(plugin, machine: machine).get()
        defer { instance.destroy() }
        do {
            _ = try instance.attach(addressSpace: space.id, start: base + 1, length: 4096)
            Issue.record("an unaligned binding was accepted")
        } catch {
            #expect(error.status == Int32(MMULAB_ERR_INVALID) && error.message == "a binding must be page aligned and not empty", "\(error)")
        }
        let binding = try instance.attach(addressSpace: space.id, start: base, length: 4096, deviceAddress: 0x1_0000_0000, write: false)
        let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: 16, alignment: 8)
        defer { buffer.deallocate() }
        buffer.initializeMemory(as: UInt8.self, repeating: 0)
        do {
            try instance.access(binding, deviceAddress: binding.deviceAddress, write: true, buffer: buffer)
            Issue.record("a write through a read-only binding succeeded")
        } catch {
            #expect(error.status == Int32(MMULAB_ERR_FAULT) && error.message == "write to a read-only binding", "\(error)")
        }
        instance.detach(binding)
    }
}
