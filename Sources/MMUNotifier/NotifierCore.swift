public import LabSync

/// What every address space's notifiers share: the synchronisation domain
/// they block through and the record of contract violations.
///
/// One lab run owns one core; nothing here is global.
public final class NotifierCore: Sendable {
    /// Ways to break the core on purpose, so tests can show the checks
    /// catch what the contract forbids. All off by default.
    public struct FaultInjection: OptionSet, Sendable, Hashable {
        public let rawValue: UInt32
        public init(rawValue: UInt32) { self.rawValue = rawValue }
        /// `register` returns without waiting for the dispatches that began
        /// before it: the race `mm_lock` closed (Andrea Arcangeli,
        /// linux-kernel, 2008-05-07, "Re: [PATCH 01 of 11] mmu-notifier-core").
        public static let skipRegistrationGracePeriod = FaultInjection(rawValue: 1 << 0)
    }

    public let sync: SyncDomain
    /// Every broken rule of the notifier contract seen so far.
    public let contractViolations: ReportLog<ContractViolation>
    public let faults: FaultInjection
    /// For lock-order validation: the pseudo-lock every blockable
    /// invalidation's callbacks run under, and every wait for them takes
    /// for an instant (Linux: `__mmu_notifier_invalidate_range_start_map`).
    /// nil when the domain does not validate lock order.
    let rangeStartMap: PseudoLock?

    public init(sync: SyncDomain = SyncDomain(), faults: FaultInjection = [], violationCapacity: Int = 10_000) {
        self.sync = sync
        self.faults = faults
        self.contractViolations = ReportLog(capacity: violationCapacity)
        rangeStartMap = sync.lockOrder.map { PseudoLock($0.pseudoLock(named: "mmu_notifier_invalidate_range_start")) }
    }

    /// Creates the notifier state of a new address space.
    public func makeAddressSpaceNotifiers(for addressSpace: AddressSpaceID) -> AddressSpaceNotifiers {
        AddressSpaceNotifiers(addressSpace: addressSpace, core: self)
    }
}

/// Why a subscription could not be changed.
public enum SubscriptionError: Error, Sendable, Hashable, CustomStringConvertible {
    /// The address space has been released (it is exiting).
    case addressSpaceReleased(AddressSpaceID)
    /// The subscriber or interval is not registered here.
    case notRegistered

    public var description: String {
        switch self {
        case .addressSpaceReleased(let id): "\(id) has been released; it takes no new subscriptions"
        case .notRegistered: "the subscription is not registered on this address space"
        }
    }
}

/// A non-blockable invalidation was refused: some subscriber could not stop
/// its device without sleeping. The caller skips the range and retries later
/// (Linux: `mmu_notifier_invalidate_range_start_nonblock` returning -EAGAIN).
public struct InvalidationRefused: Error, Sendable, CustomStringConvertible {
    public let range: InvalidationRange
    /// The subscriber (or interval) that answered retry.
    public let refusedBy: String

    public var description: String { "\(refusedBy) refused non-blockable \(range)" }
}

/// A pseudo-lock of the lock-order validator: a wait that deadlocks like a
/// lock, "held" across what it waits for.
final class PseudoLock: Sendable {
    let hook: LockOrderHook

    init(_ lockClass: LockClass) { hook = LockOrderHook(lockClass) }

    func acquire(site: SourceSite) { hook.acquire(self, site: site) }
    func release() { hook.release(self) }

    /// A wait for what runs under it: taken and dropped at once.
    func mightWait(site: SourceSite) {
        acquire(site: site)
        release()
    }
}
