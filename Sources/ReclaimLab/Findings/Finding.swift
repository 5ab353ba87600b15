/// One thing the oracle found, named by the invariant it breaks: one
/// occurrence, with its evidence. Occurrences that are the same bug are
/// counted together in a `Bug`.
public struct Finding: Sendable, CustomStringConvertible {
    public enum Invariant: String, Sendable, CaseIterable {
        case staleTranslation = "stale translation"
        case useAfterFree = "use after free"
        case crossSpaceLeak = "cross-address-space leak"
        case lostWrite = "lost write"
        case writeThroughReadOnly = "write through a read-only translation"
        case protNoneAccess = "access to a PROT_NONE page"
        case hotPageEvicted = "hot page evicted"
        case youngLost = "used page reported not young"
        case pinLeak = "pin leak"
        case contextViolation = "context violation"
        /// A subscriber answered retry to a blockable start (only a
        /// non-blockable start may fail).
        case retryFromBlockableStart = "retry from a blockable start"
        case unpairedStartEnd = "unpaired start/end"
        /// A plugin logged `MMULAB_LOG_MISBEHAVING`: it caught itself
        /// breaking the contract (the ABI header promises it is reported
        /// with the run's violations).
        case pluginReported = "misbehaviour reported by a plugin"
        /// A plugin called a host service with something wrong (a pfn the
        /// host never handed out, a double unpin, a destroyed lock, ...):
        /// the host refused it and went on.
        case pluginContract = "plugin contract violation"
        /// A plugin left a registration, pin or page behind when a binding
        /// was detached or the instance destroyed: the host undid it.
        case leftBehind = "left behind by a plugin"
        /// A cycle in the lock-order graph (lockdep): two paths take the
        /// same locks in opposite orders, and can deadlock.
        case lockInversion = "possible lock inversion"
        /// A plugin callback or operation returned holding a host lock.
        case lockHeldAtReturn = "lock held when a callback returns"
        case stuck = "stuck (watchdog)"
    }

    /// The page a finding is about, as it was when the finding was made.
    public struct Place: Sendable {
        /// Address space and mapping, by their scenario names.
        public var space: String
        public var mapping: String
        public var page: Int
        public var address: UInt64
        /// What the primary maps there now (a frame, a swap slot, nothing).
        public var frame: String

        public init(space: String, mapping: String, page: Int, address: UInt64, frame: String) {
            self.space = space
            self.mapping = mapping
            self.page = page
            self.address = address
            self.frame = frame
        }
    }

    public var invariant: Invariant
    public var detail: String
    public var place: Place?
    /// The last events that touched the page, oldest first, with their
    /// times (`t=... µs` since the run's start).
    public var trail: [String]
    /// When the bad access happened (or, where its time is not known, when
    /// it was seen), in seconds since the run's start.
    public var seconds: Double?
    /// Who made the access: the workload thread or pressure actor.
    public var actor: String?
    /// The translation the device used: the frame (or device page) and,
    /// when the primary's check reports it, its generation.
    public var deviceTranslation: String?
    /// The scheduling step it was noted at, in a deterministic run
    /// (`--schedule`): the last step any thread passed before it. A replay
    /// and a shrink match a finding by it.
    public var step: UInt64? = nil
    /// For a bad access the primary checked (a stale translation, a use
    /// after free, a write through a read-only translation, a late
    /// `set_dirty`), the step at which it checked it, in a deterministic
    /// run: often well before `step`, as the run notes such findings when it
    /// drains the machine's log. `replay --trail` draws the steps up to it.
    public var accessStep: UInt64? = nil

    public init(
        invariant: Invariant, detail: String, place: Place? = nil, trail: [String] = [], seconds: Double? = nil, actor: String? = nil,
        deviceTranslation: String? = nil
    ) {
        self.invariant = invariant
        self.detail = detail
        self.place = place
        self.trail = trail
        self.seconds = seconds
        self.actor = actor
        self.deviceTranslation = deviceTranslation
    }

    public var description: String { "\(invariant.rawValue): \(detail)" }
}
