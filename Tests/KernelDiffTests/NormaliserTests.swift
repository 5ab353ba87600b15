import Testing

@testable import KernelDiff

@Suite("Normalisation")
struct NormaliserTests {
    let script: Script

    init() throws {
        script = try ScriptParser.parse("map a anon 4\nmap b anon 2\nmremap a\nfork\nread a 0\n", path: "n.kdiff")
    }

    func page(_ frame: UInt64?, exclusive: Bool = true, zero: Bool = false) -> RawPage {
        RawPage(present: frame != nil, swapped: false, exclusive: exclusive, frame: frame, zeroPage: zero)
    }

    func value(_ observables: [Observable], _ name: String) -> String? { observables.first { $0.name == name }?.value }

    @Test func rangesBecomePagesOfTheScriptsMappingsWhereverLinuxSplitsThem() {
        var normaliser = Normaliser(script: script)
        var snap = SideSnapshot()
        snap.layout = [0: Placement(start: 0x10000, pages: 4), 1: Placement(start: 0x40000, pages: 2)]
        snap.pagemap = [0: Array(repeating: page(nil), count: 4), 1: [page(nil), page(nil)]]
        _ = normaliser.observe(script.steps[0], [], snap)
        // Two ranges over a (split), one covering b and what lies beyond it,
        // one outside every mapping (the runner's own heap): dropped.
        snap.invalidations = [
            RawRange(start: 0x10000, end: 0x12000, cause: "self"), RawRange(start: 0x12000, end: 0x13000, cause: "self"),
            RawRange(start: 0x3f000, end: 0x100000, cause: "ksmd"), RawRange(start: 0x900000, end: 0x901000, cause: "self"),
        ]
        snap.agings = [RawRange(start: 0x41000, end: 0x42000, cause: "self")]
        let seen = normaliser.observe(script.steps[1], [], snap)
        #expect(value(seen, "invalidated") == "a[0-2] b[0-1]")
        #expect(seen.first { $0.name == "invalidated" }?.detail == "a[0-2] b[0-1] (ksmd, self)")
        #expect(value(seen, "aged") == "b[1]")
        // mremap: the old range is found through the layout before the step.
        snap.layout[0] = Placement(start: 0x80000, pages: 4)
        snap.invalidations = [RawRange(start: 0x10000, end: 0x14000, cause: "self")]
        snap.agings = []
        let moved = normaliser.observe(script.steps[2], [], snap)
        #expect(value(moved, "invalidated") == "a[0-3]")
        #expect(value(moved, "aged") == "none")
    }

    @Test func pagesBecomeTokensByFrameIdentity() {
        var normaliser = Normaliser(script: script)
        var snap = SideSnapshot()
        snap.layout = [0: Placement(start: 0x10000, pages: 4), 1: Placement(start: 0x40000, pages: 2)]
        snap.pagemap = [0: [page(10), page(11), page(nil, zero: true), page(nil)], 1: [page(20), page(21)]]
        snap.pagemap[0]![2] = RawPage(present: true, swapped: false, exclusive: false, frame: 99, zeroPage: true)
        snap.pagemap[0]![3] = RawPage(present: false, swapped: true, exclusive: false, frame: nil, zeroPage: false)
        let first = normaliser.observe(script.steps[0], [], snap)
        #expect(value(first, "pagemap a") == "Nx Nx Z S")
        #expect(value(first, "pagemap b") == "Nx Nx")
        // fork: the child shares a's frames; a[1] was copied (frame changed);
        // b[0] now maps the same frame as b[1] (a KSM-like merge).
        snap.pagemap = [0: [page(10, exclusive: false), page(12), page(nil), page(nil)], 1: [page(21, exclusive: false), page(21, exclusive: false)]]
        snap.childPagemap = [0: [page(10, exclusive: false), page(11), page(nil), page(nil)], 1: [page(nil), page(nil)]]
        let forked = normaliser.observe(script.steps[3], [], snap)
        #expect(value(forked, "pagemap a") == "Ks Cx . .")
        #expect(value(forked, "child a") == "Ks Kx . .", "a child's page at the fork compares with the parent's before it")
        #expect(value(forked, "pagemap b") == "Cs Ks")
    }

    @Test func outcomesAndResidency() {
        var normaliser = Normaliser(script: script)
        var snap = SideSnapshot()
        snap.outcomes = [.value(0x2a), .error("ENOMEM"), .fault]
        snap.resident = [1: [true, nil]]
        let primitives: [Primitive] = [.read(id: 0, page: 0), .munmap(PageRange(mapping: 0, first: 0, count: 1)), .read(id: 0, page: 0)]
        let seen = normaliser.observe(script.steps[4], primitives, snap)
        #expect(value(seen, "read a[0]") == "0x2a")
        #expect(value(seen, "result") == "error")
        #expect(seen.first { $0.name == "result" }?.detail == "error (ENOMEM)")
        #expect(value(seen, "read a[0] #2") == "fault")
        #expect(value(seen, "resident b") == "1-")
    }

    @Test func runsOfPages() {
        #expect(runs([0, 1, 2, 3, 5, 7, 8]) == "0-3,5,7-8")
        #expect(runs([4]) == "4")
    }
}
