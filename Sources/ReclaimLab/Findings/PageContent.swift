/// What the 16 bytes a read returned are, as the oracle tells them apart:
/// a tracked page's tag (checked against the lab's spaces, mappings and
/// pages, so random bytes that happen to end in the tag's magic are not
/// taken for a tag), the fixed content of KSM's duplicate pages, a
/// short-lived exit-release space's tag, zeros, or unrecognised data.
enum PageContent: Equatable {
    case zeros
    /// Page `page` of mapping `mapping` of space `space` (indices in the scenario), at `version`.
    case tag(TrackedMapping.Decoded)
    case duplicate
    /// Page `page` of round `round` of exit-release actor `actor`'s short-lived space.
    case shortLived(actor: UInt8, round: UInt32, page: UInt32)
    case unrecognised([UInt8])

    /// Classifies `bytes` against the lab's tracked mappings (by space index, then mapping index).
    init(_ bytes: [UInt8], mappings: [[TrackedMapping]]) {
        if bytes.allSatisfy({ $0 == 0 }) {
            self = .zeros
            return
        }
        guard bytes.count >= 16 else {
            self = .unrecognised(bytes)
            return
        }
        if bytes[15] == TrackedMapping.magic, bytes[0..<15].allSatisfy({ $0 == 0xD0 }) {
            self = .duplicate
            return
        }
        if let tag = TrackedMapping.decode(bytes), Int(tag.space) < mappings.count, Int(tag.mapping) < mappings[Int(tag.space)].count,
            Int(tag.page) < mappings[Int(tag.space)][Int(tag.mapping)].pages
        {
            self = .tag(tag)
            return
        }
        if bytes[15] == DeviceActors.shortLivedMagic {
            func word(_ at: Int) -> UInt32 { (0..<4).reduce(0) { $0 | UInt32(bytes[at + $1]) << (8 * UInt32($1)) } }
            self = .shortLived(actor: bytes[14], round: word(0), page: word(4))
            return
        }
        self = .unrecognised(bytes)
    }

    /// As a finding's detail says it, naming spaces and mappings by the
    /// scenario's names: `page 12 of app/heap (version 3)`.
    func describe(mappings: [[TrackedMapping]]) -> String {
        switch self {
        case .zeros: return "zeros"
        case .tag(let tag):
            let mapping = mappings[Int(tag.space)][Int(tag.mapping)]
            return "the data of page \(tag.page) of \(mapping.spaceName)/\(mapping.mappingName) (version \(tag.version))"
        case .duplicate: return "the content of KSM's duplicate pages"
        case .shortLived(let actor, let round, let page):
            return "the data of page \(page) of a short-lived exit-release space (actor \(actor), round \(round))"
        case .unrecognised(let bytes):
            return "unrecognised data (" + bytes.prefix(16).map { ($0 < 16 ? "0" : "") + String($0, radix: 16) }.joined(separator: " ") + ")"
        }
    }
}
