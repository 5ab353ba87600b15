/// The one-page (or one-range) commands a step is made of. Both sides run
/// exactly these, in this order: the kernel runner receives each as a line
/// of its protocol (`line`), the model performs each through its public API.
public enum Primitive: Sendable, Hashable {
    case map(id: Int, kind: MappingKind, pages: Int, protection: Protection, advice: HugePageAdvice)
    case read(id: Int, page: Int)
    case write(id: Int, page: Int, value: UInt32)
    case guestRead(id: Int, page: Int)
    case guestWrite(id: Int, page: Int, value: UInt32)
    case childRead(id: Int, page: Int)
    case childWrite(id: Int, page: Int, value: UInt32)
    case munmap(PageRange)
    case dontNeed(PageRange)
    case free(PageRange)
    case writeProtect(PageRange, protect: Bool)
    case unregister(id: Int)
    case collapse(PageRange)
    case pageOut(PageRange)
    case mergeable(PageRange)
    case mprotect(PageRange, Protection)
    case mremap(id: Int)
    case fork
    case childExit
    case ksm
    case migrate(PageRange, node: Int)
    case exit

    /// The runner's protocol line (Sources/KernelRunner/subject.c and main.c).
    public var line: String {
        func range(_ verb: String, _ r: PageRange) -> String { "\(verb) \(r.mapping) \(r.first) \(r.count)" }
        switch self {
        case .map(let id, let kind, let pages, let protection, let advice):
            return "map \(id) \(kind.rawValue) \(pages) \(protection.rawValue)" + (advice == .nohuge ? "" : " \(advice.rawValue)")
        case .read(let id, let page): return "read \(id) \(page)"
        case .write(let id, let page, let value): return "write \(id) \(page) \(String(value, radix: 16))"
        case .guestRead(let id, let page): return "gread \(id) \(page)"
        case .guestWrite(let id, let page, let value): return "gwrite \(id) \(page) \(String(value, radix: 16))"
        case .childRead(let id, let page): return "cread \(id) \(page)"
        case .childWrite(let id, let page, let value): return "cwrite \(id) \(page) \(String(value, radix: 16))"
        case .munmap(let r): return range("munmap", r)
        case .dontNeed(let r): return range("dontneed", r)
        case .free(let r): return range("free", r)
        case .writeProtect(let r, let protect): return range(protect ? "wrprotect" : "wrunprotect", r)
        case .unregister(let id): return "unregister \(id)"
        case .collapse(let r): return range("collapse", r)
        case .pageOut(let r): return range("pageout", r)
        case .mergeable(let r): return range("mergeable", r)
        case .mprotect(let r, let p): return range("mprotect", r) + " \(p.rawValue)"
        case .mremap(let id): return "mremap \(id)"
        case .fork: return "fork"
        case .childExit: return "cexit"
        case .ksm: return "ksm"
        case .migrate(let r, let node): return range("migrate", r) + " \(node)"
        case .exit: return "exit"
        }
    }
}

extension Step {
    /// The step as primitives: the operation (one primitive per page for
    /// accesses), then a guest read of every watched page. `nodes` is the
    /// machine's NUMA node count (migration moves pages to the next node).
    func primitives(nodes: Int) -> [Primitive] {
        var result: [Primitive] = []
        switch operation {
        case .map(let m, let p): result = [.map(id: m.id, kind: m.kind, pages: m.pages, protection: p, advice: m.advice)]
        case .read(let r): result = r.pages.map { .read(id: r.mapping, page: $0) }
        case .write(let r, let v): result = r.pages.map { .write(id: r.mapping, page: $0, value: v) }
        case .guestRead(let r): result = r.pages.map { .guestRead(id: r.mapping, page: $0) }
        case .guestWrite(let r, let v): result = r.pages.map { .guestWrite(id: r.mapping, page: $0, value: v) }
        case .childRead(let r): result = r.pages.map { .childRead(id: r.mapping, page: $0) }
        case .childWrite(let r, let v): result = r.pages.map { .childWrite(id: r.mapping, page: $0, value: v) }
        case .munmap(let r): result = [.munmap(r)]
        case .dontNeed(let r): result = [.dontNeed(r)]
        case .free(let r): result = [.free(r)]
        case .writeProtect(let r, let protect): result = [.writeProtect(r, protect: protect)]
        case .unregister(let id): result = [.unregister(id: id)]
        case .collapse(let r): result = [.collapse(r)]
        case .pageOut(let r): result = [.pageOut(r)]
        case .mergeable(let r): result = [.mergeable(r)]
        case .mprotect(let r, let p): result = [.mprotect(r, p)]
        case .mremap(let id): result = [.mremap(id: id)]
        case .fork: result = [.fork]
        case .childExit: result = [.childExit]
        case .ksm: result = [.ksm]
        case .migrate(let r): result = [.migrate(r, node: nodes > 1 ? 1 : 0)]
        case .exit: result = [.exit]
        }
        if case .exit = operation { return result }
        for watch in watched { result += watch.pages.map { .guestRead(id: watch.mapping, page: $0) } }
        return result
    }

    /// Why this step cannot run on a machine with `facts`, if it cannot.
    func unsupported(on facts: MachineFacts) -> String? {
        if case .migrate = operation, facts.nodes < 2 { return "migration needs two NUMA nodes; this machine has \(facts.nodes)" }
        return nil
    }
}
