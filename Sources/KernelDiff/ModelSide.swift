import LabSync
import MMUNotifier
import VirtualMemory

/// The model side of one script: a `Machine` shaped like the real one (its
/// NUMA nodes; swap only if the machine has a swap device), one address
/// space with a KVM-like guest subscribed to it, the script's mappings at
/// addresses of their own, and the forked child while it runs.
final class ModelSide {
    let machine: Machine
    let space: AddressSpace
    let guest: ModelGuest
    private var child: AddressSpace?
    private var files: [Int: BackingFile] = [:]
    private var layout: [Int: Placement] = [:]
    private var kinds: [Int: MappingKind] = [:]
    private var nextSlot: UInt64 = 0
    private var exited = false
    /// Mappings registered for userfaultfd write-protect (on first use, as the runner does).
    private var userfaultRegistered: Set<Int> = []

    /// Mappings start 1 GiB apart from here, as the runner's do (from another base).
    static let slotBase: UInt64 = 0x10_0000_0000
    static let slotStride: UInt64 = 0x4000_0000

    init(facts: MachineFacts, faults: MemoryFaultInjection) {
        // Transparent huge pages where a mapping asks (MADV_HUGEPAGE), as
        // the runner's machine (enabled: madvise) gives them.
        machine = Machine(
            .init(
                memory: .init(frames: 8192, nodes: max(facts.nodes, 1), payloadSize: 16),
                swapSlots: facts.swapDevices > 0 ? 8192 : 0, faults: faults, transparentHugePages: .madvise))
        space = machine.makeAddressSpace()
        guest = ModelGuest(machine: machine, space: space)
        do {
            try space.notifiers.register(guest)
        } catch {
            preconditionFailure("a new address space refused its first subscriber: \(error)")
        }
    }

    private func nextAddress() -> UInt64 {
        defer { nextSlot += 1 }
        return Self.slotBase + nextSlot * Self.slotStride
    }

    private func address(_ id: Int, _ page: Int) -> UInt64 { layout[id]!.start + UInt64(page) * 4096 }

    /// Performs one primitive through the model's public API.
    func perform(_ primitive: Primitive) -> Outcome {
        do {
            return try run(primitive)
        } catch {
            switch error {
            case .segmentationFault, .protectionFault: return .fault
            default: return .error(error.description)
            }
        }
    }

    private func run(_ primitive: Primitive) throws(MemoryError) -> Outcome {
        if exited { return .error("the process has exited") }
        switch primitive {
        case .map(let id, let kind, let pages, let protection, let advice):
            let length = UInt64(pages) * 4096
            let at = nextAddress()
            switch kind {
            case .anon:
                _ = try space.map(length: length, kind: .anonymousPrivate, protection: protection.model, at: at)
                // As the runner: MADV_HUGEPAGE, MADV_NOHUGEPAGE, or neither.
                if advice != .unadvised { try space.adviseHugePage(start: at, length: length, enable: advice == .huge) }
            case .shared: _ = try space.map(length: length, kind: .anonymousShared, protection: protection.model, at: at)
            case .file:
                let file = machine.makeFile(named: "kdiff-\(id)", pages: pages)
                files[id] = file
                _ = try space.map(length: length, kind: .fileShared, protection: protection.model, file: file, at: at)
            }
            layout[id] = Placement(start: at, pages: pages)
            kinds[id] = kind
            return .ok
        case .read(let id, let page): return .value(word(try space.read(address(id, page))))
        case .write(let id, let page, let value):
            try space.write(address(id, page), bytes(value))
            return .ok
        case .guestRead(let id, let page): return guest.read(address(id, page))
        case .guestWrite(let id, let page, let value): return guest.write(address(id, page), value)
        case .childRead(let id, let page):
            guard let child else { return .error("no child") }
            return .value(word(try child.read(address(id, page))))
        case .childWrite(let id, let page, let value):
            guard let child else { return .error("no child") }
            try child.write(address(id, page), bytes(value))
            return .ok
        case .munmap(let r): try space.unmap(start: address(r.mapping, r.first), length: UInt64(r.count) * 4096)
        case .dontNeed(let r): try space.adviseDontNeed(start: address(r.mapping, r.first), length: UInt64(r.count) * 4096)
        case .free(let r): try space.adviseFree(start: address(r.mapping, r.first), length: UInt64(r.count) * 4096)
        case .unregister(let id):
            if userfaultRegistered.remove(id) != nil {
                try space.unregisterUserfault(start: layout[id]!.start, length: UInt64(layout[id]!.pages) * 4096)
            }
        case .collapse(let r):
            // MADV_COLLAPSE fails (EINVAL/EAGAIN-like) when nothing there can collapse.
            let blocks = try space.adviseCollapse(start: address(r.mapping, r.first), length: UInt64(r.count) * 4096)
            if blocks == 0 { return .error("nothing collapsed") }
        case .writeProtect(let r, let protect):
            if !userfaultRegistered.contains(r.mapping) {
                try space.registerUserfault(start: layout[r.mapping]!.start, length: UInt64(layout[r.mapping]!.pages) * 4096)
                userfaultRegistered.insert(r.mapping)
            }
            try space.userfaultWriteProtect(start: address(r.mapping, r.first), length: UInt64(r.count) * 4096, protect: protect)
        case .pageOut(let r): _ = try machine.pageOut(space, start: address(r.mapping, r.first), length: UInt64(r.count) * 4096)
        case .mergeable(let r): try space.adviseMergeable(start: address(r.mapping, r.first), length: UInt64(r.count) * 4096)
        case .mprotect(let r, let p): try space.protect(start: address(r.mapping, r.first), length: UInt64(r.count) * 4096, p.model)
        case .mremap(let id):
            let to = nextAddress()
            try space.remap(from: layout[id]!.start, length: UInt64(layout[id]!.pages) * 4096, to: to)
            layout[id] = Placement(start: to, pages: layout[id]!.pages)
        case .fork: child = try space.fork()
        case .childExit:
            child?.exit()
            child = nil
        case .ksm:
            // The runner waits for three full scans of ksmd; the model's
            // scanner merges within a scan, so three are more than enough.
            for _ in 0..<3 { _ = machine.samePageMerger.scan() }
        case .migrate(let r, let node):
            for page in r.pages {
                let result = machine.migrate(space, address: address(r.mapping, page), to: node)
                if case .noMemory = result { return .error("\(result)") }
            }
        case .exit:
            space.exit()
            exited = true
        }
        return .ok
    }

    /// What the guest saw since the last snapshot, and the state now.
    func snapshot() -> SideSnapshot {
        var snap = SideSnapshot()
        let events = guest.drainEvents()
        snap.invalidations = events.invalidations
        snap.agings = events.agings
        guard !exited else { return snap }
        snap.layout = layout
        for (id, placement) in layout {
            snap.pagemap[id] = space.pageMap(start: placement.start, pages: placement.pages).map(RawPage.init)
            if let child {
                snap.childPagemap = snap.childPagemap ?? [:]
                snap.childPagemap![id] = child.pageMap(start: placement.start, pages: placement.pages).map(RawPage.init)
            }
            if kinds[id] != .anon { snap.resident[id] = space.residency(start: placement.start, pages: placement.pages) }
        }
        return snap
    }

    /// Ends the script: the child and the process exit if they still run.
    func finish() {
        child?.exit()
        child = nil
        if !exited { space.exit() }
        exited = true
    }
}

extension Protection {
    var model: VirtualMemory.Protection {
        switch self {
        case .rw: .readWrite
        case .r: .read
        case .none: .none
        }
    }
}

extension RawPage {
    init(_ entry: PageMapEntry) {
        self.init(
            present: entry.present, swapped: entry.swapped, exclusive: entry.exclusive, frame: entry.frame?.rawValue,
            zeroPage: entry.zeroPage)
    }
}

/// The first 32-bit word of a page, little-endian (as the x86 runner reads it).
func word(_ bytes: [UInt8]) -> UInt32 {
    bytes.prefix(4).enumerated().reduce(0) { $0 | UInt32($1.element) << (8 * UInt32($1.offset)) }
}

/// A 32-bit word as the first bytes of a page.
func bytes(_ value: UInt32) -> [UInt8] { (0..<4).map { UInt8(truncatingIfNeeded: value >> (8 * $0)) } }
