import LabSync
import PluginHost
import VirtualMemory

/// The Linux shim's probe fixture (Tests/Fixtures/Plugins/LinuxShim): one
/// machine, one address space, one binding over `pages` anonymous pages
/// with a probe on it, and the probe's commands, run in the binding's
/// scope through the plugin's `control` (probe.h).
final class ShimProbe: @unchecked Sendable {
    // @unchecked: immutable references to thread-safe objects; a probe's
    // commands may run from several threads (the plugin synchronises).

    /// probe.h's `enum probe_commands`.
    enum Command: UInt32 {
        case selftest = 1, readBegin, readRetry, hmmFault, kmapRead, kmapWrite, setDirty, pageToPFN, pin, unpin, intervalState
        case context, warn, waitEvent, wake, waitCompletion, complete, rwsem, jiffies, mmget, notifier, reclaimAlloc
    }

    /// probe.h's `struct probe_command`, as the probe left it.
    struct Reply {
        var result: Int64
        var arguments: [UInt64]
        var bytes: [UInt8]
        var message: String
    }

    /// Linux's errno values the tests expect back.
    static let EBUSY: Int64 = -16, EFAULT: Int64 = -14

    /// mmu_notifier_event (<linux/mmu_notifier.h>).
    enum Event: UInt64 { case unmap = 0, clear, protectionVMA, protectionPage, softDirty, release, migrate, exclusive }

    let machine: Machine
    let space: AddressSpace
    let instance: PluginInstance
    let binding: PluginInstance.Binding
    let base: UInt64
    let pages: Int

    init(pages: Int = 16, frames: Int = 256) throws {
        machine = makeMachine(frames: frames, nodes: 1)
        space = machine.makeAddressSpace()
        self.pages = pages
        base = try space.map(length: UInt64(pages) * 4096, kind: .anonymousPrivate)
        instance = try PluginInstance.create(try load(fixture("linuxshim")), machine: machine).get()
        binding = try instance.attach(addressSpace: space.id, start: base, length: UInt64(pages) * 4096)
    }

    func address(_ page: Int) -> UInt64 { base + UInt64(page) * 4096 }

    /// Runs `command` with `arguments` (and `bytes` in) and returns what the probe wrote back.
    @discardableResult
    func run(_ command: Command, _ arguments: [UInt64] = [], bytes: [UInt8] = []) throws -> Reply {
        // result (8), arguments (4 x 8), bytes (16), message (128)
        var block = [UInt8](repeating: 0, count: 184)
        for (i, argument) in arguments.prefix(4).enumerated() {
            withUnsafeBytes(of: argument.littleEndian) { block.replaceSubrange(8 + 8 * i..<16 + 8 * i, with: $0) }
        }
        block.replaceSubrange(40..<40 + min(bytes.count, 16), with: bytes.prefix(16))
        try block.withUnsafeMutableBytes { try instance.control(binding, command: command.rawValue, argument: $0) }
        func word(_ at: Int) -> UInt64 { block[at..<at + 8].reversed().reduce(0) { $0 << 8 | UInt64($1) } }
        return Reply(
            result: Int64(bitPattern: word(0)), arguments: (0..<4).map { word(8 + 8 * $0) }, bytes: Array(block[40..<56]),
            message: String(decoding: block[56..<184].prefix { $0 != 0 }, as: UTF8.self))
    }

    /// The probe's misbehaviour reports (WARN_ON, BUG and the shim's own).
    var reports: [String] { instance.log.snapshot.filter { $0.level == .misbehaving }.map(\.message) }

    /// The primary's record of bad device accesses at `address`.
    func violations(at address: UInt64) -> [MemoryViolation.Kind] {
        machine.violations.snapshot.filter { $0.address == address }.map(\.kind)
    }
}

/// A 16-byte payload the CPU or the device writes: (page, version).
func payload(_ page: Int, _ version: UInt8) -> [UInt8] {
    var bytes = [UInt8](repeating: 0, count: 16)
    bytes[0] = UInt8(page)
    bytes[1] = version
    bytes[15] = 0x5A
    return bytes
}
