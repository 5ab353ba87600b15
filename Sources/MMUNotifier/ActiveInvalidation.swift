import LabSync

/// A started invalidation that must be ended exactly once.
///
/// It is a non-copyable value: it cannot be ended twice, and if it is
/// dropped without `end()` its deinit records an `unpairedStart` contract
/// violation and ends it anyway, so the lab keeps running and the report
/// names the line that forgot.
public struct ActiveInvalidation: ~Copyable {
    public let range: InvalidationRange
    // Unmanaged (retained at start, released at end) keeps the struct
    // trivially destructible, which `discard self` requires. `list` is the
    // reference the start took under the notifiers' lock; `finish` drops it.
    private let notifiers: Unmanaged<AddressSpaceNotifiers>
    private let list: Unmanaged<SubscriberList>
    /// The subscribers that answered retry to this (blockable) start and so
    /// get no end (any number of them; `finish` disposes of it).
    private let skipped: PositionSet
    private let site: SourceSite

    /// `list` comes retained: this takes over that reference.
    init(range: InvalidationRange, notifiers: AddressSpaceNotifiers, list: Unmanaged<SubscriberList>, skipped: PositionSet, site: SourceSite) {
        self.range = range
        self.notifiers = .passRetained(notifiers)
        self.list = list
        self.skipped = skipped
        self.site = site
    }

    /// Ends the invalidation: `invalidateRangeEnd` goes to every subscriber
    /// whose start succeeded, and deferred interval changes are applied once
    /// no invalidation is active.
    public consuming func end() {
        let notifiers = self.notifiers.takeRetainedValue()
        notifiers.finish(range, list: list, skipped: skipped)
        discard self
    }

    deinit {
        let notifiers = self.notifiers.takeRetainedValue()
        notifiers.core.contractViolations.record(
            ContractViolation(kind: .unpairedStart, range: range, site: site))
        notifiers.finish(range, list: list, skipped: skipped)
    }
}
