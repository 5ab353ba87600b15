/// What one primitive came to, on either side.
public enum Outcome: Sendable, Hashable, CustomStringConvertible {
    case ok
    /// A read returned this 32-bit word.
    case value(UInt32)
    /// The access faulted: SIGSEGV/SIGBUS for the CPU, EFAULT from `KVM_RUN`
    /// for the guest; in the model, a segmentation or protection fault.
    case fault
    /// The operation failed; the text says how (errno, or the model's error).
    case error(String)

    public var description: String {
        switch self {
        case .ok: "ok"
        case .value(let v): "0x\(String(v, radix: 16))"
        case .fault: "fault"
        case .error(let why): "error (\(why))"
        }
    }

    /// What is compared: errors by kind only (errno and the model's message never match).
    var comparable: String {
        if case .error = self { return "error" }
        return description
    }
}

/// An address range one side reported, `[start, end)`, with who caused it
/// (kernel: the task, `self` or `ksmd`; model: the event reason).
public struct RawRange: Sendable, Hashable {
    public let start: UInt64
    public let end: UInt64
    public let cause: String

    public init(start: UInt64, end: UInt64, cause: String) {
        self.start = start
        self.end = end
        self.cause = cause
    }
}

/// One page of a pagemap, from either side.
public struct RawPage: Sendable, Hashable {
    public var present: Bool
    public var swapped: Bool
    public var exclusive: Bool
    /// The frame number, when present (kernel PFN, or model frame): only
    /// compared for identity within one side.
    public var frame: UInt64?
    public var zeroPage: Bool

    public init(present: Bool, swapped: Bool, exclusive: Bool, frame: UInt64?, zeroPage: Bool) {
        self.present = present
        self.swapped = swapped
        self.exclusive = exclusive
        self.frame = frame
        self.zeroPage = zeroPage
    }

    public static let absent = RawPage(present: false, swapped: false, exclusive: false, frame: nil, zeroPage: false)
}

/// Where a mapping is now, on one side.
public struct Placement: Sendable, Hashable {
    public let start: UInt64
    public let pages: Int

    public init(start: UInt64, pages: Int) {
        self.start = start
        self.pages = pages
    }

    func page(of address: UInt64) -> Int? {
        guard address >= start, address < start + UInt64(pages) * 4096 else { return nil }
        return Int((address - start) >> 12)
    }
}

/// Everything one side observed over one step: the outcome of each
/// primitive, the invalidations and aging calls that reached the secondary
/// MMU (in order), and the state after the step.
public struct SideSnapshot: Sendable, Hashable {
    public var outcomes: [Outcome] = []
    public var invalidations: [RawRange] = []
    public var agings: [RawRange] = []
    /// Mapping id -> where it is (absent once the process exited).
    public var layout: [Int: Placement] = [:]
    public var pagemap: [Int: [RawPage]] = [:]
    /// The forked child's pagemap of the same mappings, while it runs.
    public var childPagemap: [Int: [RawPage]]? = nil
    /// Shared and file mappings: page-cache residency (mincore); nil where unmapped.
    public var resident: [Int: [Bool?]] = [:]

    public init() {}
}

/// What the kernel runner found out about this machine.
public struct MachineFacts: Sendable, Hashable {
    public var kernel: String
    public var nodes: Int
    public var swapDevices: Int

    public init(kernel: String, nodes: Int, swapDevices: Int) {
        self.kernel = kernel
        self.nodes = nodes
        self.swapDevices = swapDevices
    }
}
