public import LabSync
public import MMUNotifier

/// A broken rule of the primary MMU's contract with its secondaries, found
/// by the check of every device access (`Machine.dmaAccess`).
public struct MemoryViolation: Sendable, CustomStringConvertible {
    public enum Kind: String, Sendable, Hashable, CaseIterable {
        /// A device reached a frame the primary does not map at that
        /// address, after its own callback for the invalidation that
        /// unmapped it returned, or with no invalidation of the address in
        /// progress; or it used the range at all after acknowledging an
        /// invalidation that was about to free or replace the page.
        case staleTranslation = "stale translation"
        /// A device reached a frame that was freed (and maybe reused) since
        /// the device translated it.
        case useAfterFree = "use after free"
        /// A device wrote through a translation to a page the primary maps
        /// read-only (mprotect, fork's copy-on-write, writeback's
        /// write-protect, KSM, the zero page), or through a translation it
        /// was given read-only.
        case writeThroughReadOnly = "write through a read-only translation"
        /// A device reached a page whose mapping is PROT_NONE.
        case protNoneAccess = "access to a PROT_NONE page"
        /// A device reached an address space that has exited.
        case accessAfterExit = "access after exit"
    }

    public let kind: Kind
    public let addressSpace: AddressSpaceID
    public let address: UInt64
    /// The frame the device used.
    public let frame: PageFrameNumber
    /// The frame's generation the device's translation carried.
    public let generation: UInt32
    /// What the primary maps there now (nil: nothing).
    public let primaryFrame: PageFrameNumber?
    /// Set when the device used a page of device memory, not a frame.
    public let devicePage: DevicePage?
    /// The device that made the access, when it said.
    public let issuer: DeviceID?
    public let write: Bool
    /// The host service through which the device touched the page's state
    /// without reaching its contents (`set_dirty`, `mark_accessed`); nil for
    /// a DMA read or write.
    public let service: String?
    /// The invalidation the device had acknowledged, for a stale
    /// translation used inside its bracket.
    public let acknowledged: InvalidationRange?
    public let thread: ThreadIdentity
    /// When the primary checked the access, on the synchronisation
    /// domain's clock (virtual under a controlled scheduler): the moment
    /// the access reached memory, which may be well after the device
    /// translated (a thread preempted between its TLB lookup and its DMA).
    public let nanoseconds: UInt64

    public init(
        kind: Kind, addressSpace: AddressSpaceID, address: UInt64, frame: PageFrameNumber, generation: UInt32,
        primaryFrame: PageFrameNumber?, devicePage: DevicePage?, issuer: DeviceID?, write: Bool, service: String? = nil,
        acknowledged: InvalidationRange? = nil, thread: ThreadIdentity = .current, nanoseconds: UInt64
    ) {
        self.kind = kind
        self.addressSpace = addressSpace
        self.address = address
        self.frame = frame
        self.generation = generation
        self.primaryFrame = primaryFrame
        self.devicePage = devicePage
        self.issuer = issuer
        self.write = write
        self.service = service
        self.acknowledged = acknowledged
        self.thread = thread
        self.nanoseconds = nanoseconds
    }

    /// What the device did to the page, in a word or three.
    public var verb: String { service.map { "called \($0) on" } ?? (write ? "wrote" : "read") }

    public var description: String {
        let now = primaryFrame.map { "the primary maps \($0)" } ?? "the primary maps nothing"
        let used = devicePage.map { "\($0)" } ?? "\(frame) gen \(generation)"
        let who = issuer.map { "\($0) " } ?? "device "
        var text = "\(kind.rawValue): \(who)\(verb) \(used) at \(addressSpace) 0x\(String(address, radix: 16)); \(now)"
        if let acknowledged { text += "; it had acknowledged the invalidation \(acknowledged)" }
        return text + " (thread \(thread))"
    }
}
