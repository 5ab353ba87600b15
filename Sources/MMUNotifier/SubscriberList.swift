import Synchronization

/// An immutable snapshot of an address space's whole-space subscribers, with
/// a count of the dispatches that are reading it.
///
/// This is the lab's SRCU: a dispatch takes the current list and counts
/// itself in; a subscription change publishes a new list, retires the old
/// one and waits until the old list's readers have all gone. After that, no
/// callback that began before the change is still running (see
/// `AddressSpaceNotifiers.register` for why that is what `mm_lock` was for).
///
/// Each list belongs to one address space; never share one (not even an
/// empty one), or one space's readers would hold up another's grace period.
final class SubscriberList: Sendable {
    let all: [any AddressSpaceSubscriber]
    /// Those that declared `.changePTE`.
    let changePTE: [any AddressSpaceSubscriber]
    /// Those that declared `.youngTracking`.
    let young: [any AddressSpaceSubscriber]
    /// Those that declared `.secondaryTLB`.
    let secondaryTLB: [any AddressSpaceSubscriber]

    let readers = Atomic<Int>(0)
    let retired = Atomic<Bool>(false)

    init(_ subscribers: [any AddressSpaceSubscriber]) {
        all = subscribers
        changePTE = subscribers.filter { $0.capabilities.contains(.changePTE) }
        young = subscribers.filter { $0.capabilities.contains(.youngTracking) }
        secondaryTLB = subscribers.filter { $0.capabilities.contains(.secondaryTLB) }
    }

    var isEmpty: Bool { all.isEmpty }

    func contains(_ subscriber: any AddressSpaceSubscriber) -> Bool {
        all.contains { $0 === subscriber }
    }
}
