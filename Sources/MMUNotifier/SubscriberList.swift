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

    /// `all`, and those that declared `.youngTracking`, `.secondaryTLB` or
    /// `.changePTE`, for dispatch: a caller that holds the list calls them
    /// with no reference counting (see `ListedSubscribers`).
    let listed: ListedSubscribers
    let young: ListedSubscribers
    let secondaryTLB: ListedSubscribers
    let changePTEListed: ListedSubscribers

    let readers = Atomic<Int>(0)
    let retired = Atomic<Bool>(false)

    init(_ subscribers: [any AddressSpaceSubscriber]) {
        all = subscribers
        changePTE = subscribers.filter { $0.capabilities.contains(.changePTE) }
        listed = ListedSubscribers(subscribers)
        young = ListedSubscribers(subscribers.filter { $0.capabilities.contains(.youngTracking) })
        secondaryTLB = ListedSubscribers(subscribers.filter { $0.capabilities.contains(.secondaryTLB) })
        changePTEListed = ListedSubscribers(changePTE)
    }

    var isEmpty: Bool { all.isEmpty }

    func contains(_ subscriber: any AddressSpaceSubscriber) -> Bool {
        all.contains { $0 === subscriber }
    }
}

/// One subscriber of a list, boxed so that a dispatch can call it through
/// an unretained reference: the subscriber is a `let` of the box, so while
/// the box is alive it cannot change or go, and the call borrows it.
final class ListedSubscriber: Sendable {
    let subscriber: any AddressSpaceSubscriber

    init(_ subscriber: any AddressSpaceSubscriber) { self.subscriber = subscriber }
}

/// Subscribers a `SubscriberList` holds, in order, callable with no
/// reference counting: `boxes` owns them, `references` names the same
/// boxes unretained. Both are immutable, so whoever holds the list (a
/// dispatch holds it from its start to its end) holds every box and every
/// subscriber, and may use `references` without retaining anything.
struct ListedSubscribers: Sendable {
    private let boxes: [ListedSubscriber]
    private let references: [Unmanaged<ListedSubscriber>]

    init(_ subscribers: [any AddressSpaceSubscriber]) {
        boxes = subscribers.map(ListedSubscriber.init)
        references = boxes.map { .passUnretained($0) }
    }

    var count: Int { references.count }

    /// Calls `body` with the subscriber at `index`, borrowed. The caller
    /// must hold the list this belongs to.
    @inline(__always)
    func with<R>(_ index: Int, _ body: (any AddressSpaceSubscriber) -> R) -> R {
        references[index]._withUnsafeGuaranteedRef { body($0.subscriber) }
    }
}
