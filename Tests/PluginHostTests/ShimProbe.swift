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
        case checkRetry, extra, pinVariant, unpinOne, page, highmem, delay, printk, mmRefs, hmmRange, exclusive, migrate
        /// Handled by the glue: the page at [0] into the instance's device memory.
        case glueToDevice = 100
    }

    /// probe.h's PROBE_NO_MM: the command runs with no current->mm.
    static let noMM: UInt32 = 0x1000

    /// probe.h's `enum probe_mmap_lock`.
    enum MmapLock: UInt64 { case none = 0, write, read }

    /// <linux/mm.h>'s gup flags.
    static let FOLL_WRITE: UInt64 = 0x01, FOLL_LONGTERM: UInt64 = 0x100

    /// probe.h's PINNED_SLOT: page i of the last pin is page PINNED_SLOT + i.
    static func pinned(_ i: Int) -> UInt64 { 8 + UInt64(i) }

    /// probe.h's `struct probe_command`, as the probe left it.
    struct Reply {
        var result: Int64
        var arguments: [UInt64]
        var bytes: [UInt8]
        var message: String
    }

    /// Linux's errno values the tests expect back.
    static let EBUSY: Int64 = -16, EFAULT: Int64 = -14, EOVERFLOW: Int64 = -75

    /// mmu_notifier_event (<linux/mmu_notifier.h>).
    enum Event: UInt64 { case unmap = 0, clear, protectionVMA, protectionPage, softDirty, release, migrate, exclusive }

    let machine: Machine
    let space: AddressSpace
    let instance: PluginInstance
    let binding: PluginInstance.Binding
    let base: UInt64
    let pages: Int
    /// The file behind the binding's pages, if they are a shared file mapping.
    let file: BackingFile?

    /// `fileBacked`: the pages are a shared mapping of a file (so writeback
    /// can make them clean), not anonymous memory.
    /// `thp`: transparent huge pages always on (the binding's pages then
    /// start on a 2 MiB boundary, and a write fault of an untouched
    /// aligned 2 MiB maps a huge page).
    init(pages: Int = 16, frames: Int = 256, fileBacked: Bool = false, thp: Bool = false) throws {
        let machine = thp
            ? Machine(.init(memory: .init(frames: frames, nodes: 1, payloadSize: 16), swapSlots: 4096, transparentHugePages: .always))
            : makeMachine(frames: frames, nodes: 1)
        let space = machine.makeAddressSpace()
        let file = fileBacked ? machine.makeFile(named: "probe-file", pages: pages) : nil
        let length = UInt64(pages) * 4096
        base = try file.map { try space.map(length: length, kind: .fileShared, file: $0) } ?? space.map(length: length, kind: .anonymousPrivate)
        (self.machine, self.space, self.file, self.pages) = (machine, space, file, pages)
        instance = try PluginInstance.create(try load(fixture("linuxshim")), machine: machine).get()
        binding = try instance.attach(addressSpace: space.id, start: base, length: UInt64(pages) * 4096)
    }

    func address(_ page: Int) -> UInt64 { base + UInt64(page) * 4096 }

    /// Runs `command` with `arguments` (and `bytes` in) and returns what the probe wrote back.
    @discardableResult
    func run(_ command: Command, _ arguments: [UInt64] = [], bytes: [UInt8] = [], noMM: Bool = false) throws -> Reply {
        // result (8), arguments (4 x 8), bytes (16), message (128)
        var block = [UInt8](repeating: 0, count: 184)
        for (i, argument) in arguments.prefix(4).enumerated() {
            withUnsafeBytes(of: argument.littleEndian) { block.replaceSubrange(8 + 8 * i..<16 + 8 * i, with: $0) }
        }
        block.replaceSubrange(40..<40 + min(bytes.count, 16), with: bytes.prefix(16))
        try block.withUnsafeMutableBytes { try instance.control(binding, command: command.rawValue | (noMM ? Self.noMM : 0), argument: $0) }
        func word(_ at: Int) -> UInt64 { block[at..<at + 8].reversed().reduce(0) { $0 << 8 | UInt64($1) } }
        return Reply(
            result: Int64(bitPattern: word(0)), arguments: (0..<4).map { word(8 + 8 * $0) }, bytes: Array(block[40..<56]),
            message: String(decoding: block[56..<184].prefix { $0 != 0 }, as: UTF8.self))
    }

    /// The probe's misbehaviour reports (WARN_ON, BUG and the shim's own).
    var reports: [String] { instance.log.snapshot.filter { $0.level == .misbehaving }.map(\.message) }

    /// The frame flags of the page at `address` as the primary maps it now.
    func frameFlags(_ address: UInt64) -> FrameFlags { machine.memory.flags(of: space.translate(address).frame) }

    /// Pins the probe holds now, over every frame.
    var pinsHeld: Int { machine.memory.allocatedFrames().reduce(0) { $0 + Int($1.pins) } }

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
