import TestSupport
import LabSync
import MMUNotifier
import Synchronization

#if canImport(Glibc)
import Glibc
#endif

let pageSize: UInt64 = 4096

func range(_ id: AddressSpaceID, pages: Range<Int>, _ event: NotifierEvent, blockable: Bool = true) -> InvalidationRange {
    InvalidationRange(
        addressSpace: id, start: UInt64(pages.lowerBound) * pageSize, end: UInt64(pages.upperBound) * pageSize,
        event: event, blockable: blockable)
}

/// A subscriber that records every call and answers as told.
final class RecordingSubscriber: AddressSpaceSubscriber, @unchecked Sendable {
    enum Call: Equatable, CustomStringConvertible {
        case start(InvalidationRange, nonBlockable: Bool)
        case end(InvalidationRange, nonBlockable: Bool)
        case secondaryTLB(InvalidationRange, nonBlockable: Bool)
        case clearYoung(nonBlockable: Bool)
        case testYoung(nonBlockable: Bool)
        case changePTE(PrimaryPTE, nonBlockable: Bool)
        case release

        var description: String {
            switch self {
            case .start(let r, let nb): "start(\(r.event)\(nb ? ", nb" : ""))"
            case .end(let r, let nb): "end(\(r.event)\(nb ? ", nb" : ""))"
            case .secondaryTLB: "secondaryTLB"
            case .clearYoung: "clearYoung"
            case .testYoung: "testYoung"
            case .changePTE: "changePTE"
            case .release: "release"
            }
        }
    }

    let subscriberName: String
    let capabilities: SubscriberCapabilities
    let domain: SyncDomain
    let answer: StartResult
    let young: Bool
    let sleepInStart: Bool
    private let log = Mutex<[Call]>([])

    init(
        _ name: String, domain: SyncDomain, capabilities: SubscriberCapabilities = [], answer: StartResult = .ok,
        young: Bool = false, sleepInStart: Bool = false
    ) {
        self.subscriberName = name
        self.domain = domain
        self.capabilities = capabilities
        self.answer = answer
        self.young = young
        self.sleepInStart = sleepInStart
    }

    var calls: [Call] { log.withLock { $0 } }
    private var nonBlockable: Bool { ExecutionContext.current.isNonBlockable }
    private func record(_ call: Call) { log.withLock { $0.append(call) } }

    func invalidateRangeStart(_ range: InvalidationRange) -> StartResult {
        record(.start(range, nonBlockable: nonBlockable))
        if sleepInStart { domain.sleep(for: .microseconds(50)) }  // "wait for in-flight DMA"
        return answer
    }
    func invalidateRangeEnd(_ range: InvalidationRange) { record(.end(range, nonBlockable: nonBlockable)) }
    func invalidateSecondaryTLBs(_ range: InvalidationRange) { record(.secondaryTLB(range, nonBlockable: nonBlockable)) }
    func clearYoung(addressSpace: AddressSpaceID, start: UInt64, end: UInt64) -> Bool {
        record(.clearYoung(nonBlockable: nonBlockable))
        return young
    }
    func testYoung(addressSpace: AddressSpaceID, address: UInt64) -> Bool {
        record(.testYoung(nonBlockable: nonBlockable))
        return young
    }
    func changePTE(addressSpace: AddressSpaceID, _ pte: PrimaryPTE) { record(.changePTE(pte, nonBlockable: nonBlockable)) }
    func release(addressSpace: AddressSpaceID) { record(.release) }
}

/// Holds a started invalidation so another thread can end it.
final class InvalidationBox: @unchecked Sendable {
    private var active: ActiveInvalidation?
    init(_ active: consuming ActiveInvalidation) { self.active = consume active }
    func end() {
        if let active = active.take() { active.end() }
    }
}
