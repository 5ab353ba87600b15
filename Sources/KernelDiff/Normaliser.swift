/// One thing compared after a step: a name (`invalidated`, `pagemap a`,
/// `guest-read a[0]`...), the value compared, and what to show.
public struct Observable: Sendable, Hashable {
    public let name: String
    /// What is compared between the sides.
    public let value: String
    /// What is shown (the value, with details that are not compared).
    public let detail: String

    public init(name: String, value: String, detail: String? = nil) {
        self.name = name
        self.value = value
        self.detail = detail ?? value
    }
}

/// Turns one side's raw snapshots into observables both sides can be
/// compared on. One per side per script: it remembers the previous step's
/// layout and frames. The normalisation (README, "The differential harness"):
///
/// - **Invalidations** become the set of script pages they cover: each
///   reported range `[start, end)` is cut to the script's mappings, by
///   where they were before the step and, for addresses no longer there
///   (mremap), after it; what lies outside every mapping (the runner's own
///   heap and stack, which fork write-protects too) is dropped. How many
///   ranges, in what order, split or merged, is not compared: Linux
///   may split one operation into several ranges (per VMA, per page table)
///   or use one range where the model uses several. The same for aging.
/// - **Pagemap**: each page becomes a token: `.` nothing, `S` swapped, `Z`
///   the shared zero page, or a present page by its frame's identity
///   relative to the previous step, `N` new (nothing or the zero page
///   there before), `K` kept (same frame), `C` changed (another frame: a
///   copy-on-write, a KSM merge, a migration), followed by `x` when the
///   page is mapped exactly once (`PM_MMAP_EXCLUSIVE`) and `s` when its
///   frame is mapped at another observed page too (the child's, or a KSM
///   sibling). Frame numbers themselves are never compared.
/// - **Residency**: mincore of shared and file mappings, `1` / `0`, `-` unmapped.
/// - **Outcomes**: each primitive's result; errors compare by kind only.
struct Normaliser {
    private var previousLayout: [Int: Placement] = [:]
    private var previousFrames: [PageKey: UInt64] = [:]
    let script: Script

    init(script: Script) { self.script = script }

    struct PageKey: Hashable {
        var child: Bool
        var mapping: Int
        var page: Int
    }

    mutating func observe(_ step: Step, _ primitives: [Primitive], _ snap: SideSnapshot) -> [Observable] {
        var result: [Observable] = []
        var seen: [String: Int] = [:]
        for (primitive, outcome) in zip(primitives, snap.outcomes) {
            var name = label(primitive)
            seen[name, default: 0] += 1
            if seen[name]! > 1 { name += " #\(seen[name]!)" }
            result.append(Observable(name: name, value: outcome.comparable, detail: outcome.description))
        }
        result.append(pageSet("invalidated", snap.invalidations, snap.layout))
        result.append(pageSet("aged", snap.agings, snap.layout))
        result += pagemaps(snap, forkStep: step.operation == .fork)
        for mapping in script.mappings {
            guard let resident = snap.resident[mapping.id] else { continue }
            result.append(Observable(name: "resident \(mapping.name)", value: resident.map { $0.map { $0 ? "1" : "0" } ?? "-" }.joined()))
        }
        previousLayout = snap.layout
        return result
    }

    /// The name of a primitive's outcome.
    private func label(_ primitive: Primitive) -> String {
        func page(_ id: Int, _ page: Int) -> String { "\(script.mappings[id].name)[\(page)]" }
        switch primitive {
        case .read(let id, let p): return "read \(page(id, p))"
        case .write(let id, let p, _): return "write \(page(id, p))"
        case .guestRead(let id, let p): return "guest-read \(page(id, p))"
        case .guestWrite(let id, let p, _): return "guest-write \(page(id, p))"
        case .childRead(let id, let p): return "child-read \(page(id, p))"
        case .childWrite(let id, let p, _): return "child-write \(page(id, p))"
        default: return "result"
        }
    }

    /// Which script pages the ranges cover, as "a[0-3] b[1]" or "none".
    private func pageSet(_ name: String, _ ranges: [RawRange], _ layout: [Int: Placement]) -> Observable {
        var pages: [Int: Set<Int>] = [:]
        var causes: Set<String> = []
        for range in ranges {
            var hit = false
            for mapping in script.mappings {
                var places: [Placement] = []
                if let before = previousLayout[mapping.id] { places.append(before) }
                if let after = layout[mapping.id], after != previousLayout[mapping.id] { places.append(after) }
                for place in places {
                    let end = place.start + UInt64(place.pages) * 4096
                    guard range.start < end, range.end > place.start else { continue }
                    let first = Int((max(range.start, place.start) - place.start) >> 12)
                    let last = Int((min(range.end, end) - 1 - place.start) >> 12)
                    pages[mapping.id, default: []].formUnion(first...last)
                    hit = true
                }
            }
            if hit { causes.insert(range.cause) }
        }
        let value = describe(pages)
        let detail = causes.isEmpty ? value : "\(value) (\(causes.sorted().joined(separator: ", ")))"
        return Observable(name: name, value: value, detail: detail)
    }

    private func describe(_ pages: [Int: Set<Int>]) -> String {
        let parts = script.mappings.compactMap { mapping -> String? in
            guard let set = pages[mapping.id], !set.isEmpty else { return nil }
            return "\(mapping.name)[\(runs(set.sorted()))]"
        }
        return parts.isEmpty ? "none" : parts.joined(separator: " ")
    }

    private mutating func pagemaps(_ snap: SideSnapshot, forkStep: Bool) -> [Observable] {
        // How many observed pages map each frame (the zero page aside).
        var mapped: [UInt64: Int] = [:]
        let views: [(Bool, [Int: [RawPage]])] = [(false, snap.pagemap)] + (snap.childPagemap.map { [(true, $0)] } ?? [])
        for (_, view) in views {
            for pages in view.values {
                for page in pages where page.present && !page.zeroPage { mapped[page.frame!, default: 0] += 1 }
            }
        }
        var result: [Observable] = []
        var frames: [PageKey: UInt64] = [:]
        for (child, view) in views {
            for mapping in script.mappings {
                guard let pages = view[mapping.id] else { continue }
                let tokens = pages.enumerated().map { index, page -> String in
                    let key = PageKey(child: child, mapping: mapping.id, page: index)
                    if page.present, !page.zeroPage { frames[key] = page.frame! }
                    // A child's page at the fork is compared with the parent's before it.
                    let before = previousFrames[key] ?? (child && forkStep ? previousFrames[PageKey(child: false, mapping: mapping.id, page: index)] : nil)
                    return token(page, before: before, shared: page.frame.map { (mapped[$0] ?? 0) > 1 } ?? false)
                }
                result.append(Observable(name: "\(child ? "child" : "pagemap") \(mapping.name)", value: tokens.joined(separator: " ")))
            }
        }
        previousFrames = frames
        return result
    }

    private func token(_ page: RawPage, before: UInt64?, shared: Bool) -> String {
        if page.swapped { return "S" }
        guard page.present, let frame = page.frame else { return "." }
        if page.zeroPage { return "Z" }
        var token = before == nil ? "N" : before == frame ? "K" : "C"
        if page.exclusive { token += "x" }
        if shared { token += "s" }
        return token
    }
}

/// "0-3,5,7-8" for [0, 1, 2, 3, 5, 7, 8].
func runs(_ sorted: [Int]) -> String {
    var parts: [String] = []
    var i = 0
    while i < sorted.count {
        var j = i
        while j + 1 < sorted.count && sorted[j + 1] == sorted[j] + 1 { j += 1 }
        parts.append(i == j ? "\(sorted[i])" : "\(sorted[i])-\(sorted[j])")
        i = j + 1
    }
    return parts.joined(separator: ",")
}
