import Testing

@testable import KernelDiff

@Suite("Script parser")
struct ScriptParserTests {
    @Test func readsEveryOperation() throws {
        let script = try ScriptParser.parse(
            """
            # a comment line
            map a anon 4          # trailing comment
            map s shared 2 r
            map f file 1 none
            watch a 0
            read a 0-1
            write a all 0x10
            write a 3
            guest-read s 1
            guest-write a 2 7
            munmap a 3
            dontneed s
            pageout f
            mergeable a 0-1
            mprotect a none 1
            mremap s
            fork
            child-read a 0
            child-write a 1 5
            child-exit
            ksm
            migrate a 0
            exit
            """, path: "dir/every.kdiff")
        #expect(script.name == "every")
        #expect(script.mappings.map(\.name) == ["a", "s", "f"])
        #expect(script.mappings.map(\.kind) == [.anon, .shared, .file])
        #expect(script.steps.count == 21)
        #expect(script.steps[0].operation == .map(MappingDeclaration(id: 0, name: "a", kind: .anon, pages: 4), .rw))
        #expect(script.steps[1].operation == .map(MappingDeclaration(id: 1, name: "s", kind: .shared, pages: 2), .r))
        #expect(script.steps[3].operation == .read(PageRange(mapping: 0, first: 0, count: 2)))
        #expect(script.steps[4].operation == .write(PageRange(mapping: 0, first: 0, count: 4), 0x10))
        // A write without a value writes its step number.
        #expect(script.steps[5].operation == .write(PageRange(mapping: 0, first: 3, count: 1), 6))
        #expect(script.steps[12].operation == .mprotect(PageRange(mapping: 0, first: 1, count: 1), .none))
        #expect(script.steps[13].operation == .mremap(mapping: 1))
        // `watch` is not a step: it applies to the steps after it.
        #expect(script.steps[0].watched.isEmpty && script.steps[2].watched.isEmpty)
        #expect(script.steps[3].watched == [PageRange(mapping: 0, first: 0, count: 1)])
        #expect(script.steps[3].line == 6)
    }

    @Test func aStepBecomesItsPrimitivesThenTheWatchedReads() throws {
        let script = try ScriptParser.parse("map a anon 4\nwatch a 3\nwrite a 0-1 9\nexit\n", path: "w.kdiff")
        #expect(
            script.steps[1].primitives(nodes: 1) == [
                .write(id: 0, page: 0, value: 9), .write(id: 0, page: 1, value: 9), .guestRead(id: 0, page: 3),
            ])
        #expect(script.steps[2].primitives(nodes: 1) == [.exit], "nothing can be read after exit")
        #expect(Primitive.mprotect(PageRange(mapping: 2, first: 1, count: 3), .r).line == "mprotect 2 1 3 r")
        #expect(Primitive.write(id: 1, page: 2, value: 255).line == "write 1 2 ff")
    }

    @Test(arguments: [
        ("map a anon 4\nfrobnicate a\n", 2, "unknown operation `frobnicate`"),
        ("map a anon 4\nread a 4\n", 2, "page 4 is past the end of `a` (4 pages)"),
        ("map a anon 4\nread a 2-1\n", 2, "pages are N, N-M or all, not `2-1`"),
        ("read b 0\n", 1, "no mapping `b` (make it with `map` first)"),
        ("map a anon 4\nmap a shared 2\n", 2, "mapping `a` is already made"),
        ("map a heap 4\n", 1, "mapping kind is anon, shared or file, not `heap`"),
        ("map a anon 513\n", 1, "a mapping has 1 to 512 pages, not `513`"),
        ("map A anon 1\n", 1, "a mapping name is lower-case letters, digits, - and _, starting with a letter: `A`"),
        ("map a anon 1\nmprotect a rx\n", 2, "protection is rw, r or none, not `rx`"),
        ("map a anon 1\nwrite a 0 lots\n", 2, "a value is a 32-bit number (decimal or 0x hex), not `lots`"),
        ("map a anon 1\nchild-write a 0\n", 2, "`child-write` needs a child: `fork` first"),
        ("map a anon 1\nfork\nfork\n", 3, "`fork` while a child is still running (end it with `child-exit` first)"),
        ("map a anon 1\nfork\nexit\n", 3, "`exit` while a child is running: `child-exit` first"),
        ("map a anon 1\nexit\nread a 0\n", 3, "nothing can follow `exit`"),
        ("map a anon 1\nmremap\n", 2, "expected `mremap NAME`"),
        ("# nothing\n", 0, "the script has no operations"),
    ])
    func refusesWithFileAndLine(text: String, line: Int, message: String) {
        #expect(throws: ScriptError(path: "t.kdiff", line: line, message: message)) { try ScriptParser.parse(text, path: "t.kdiff") }
    }

    @Test func errorsReadFileColonLine() {
        #expect("\(ScriptError(path: "x/y.kdiff", line: 7, message: "why"))" == "x/y.kdiff:7: why")
    }

    /// The library covers every operation of the issue (migration included,
    /// though it needs two NUMA nodes), at least 30 scripts.
    @Test func theLibraryCoversEveryOperation() throws {
        let scripts = try libraryScripts()
        #expect(scripts.count >= 30)
        var seen: Set<String> = []
        var kinds: Set<MappingKind> = []
        var protections: Set<Protection> = []
        for script in scripts {
            kinds.formUnion(script.mappings.map(\.kind))
            for step in script.steps {
                seen.insert(String(step.text.split(separator: " ")[0]))
                if case .mprotect(_, let p) = step.operation { protections.insert(p) }
            }
        }
        let operations: Set<String> = [
            "map", "read", "write", "guest-read", "guest-write", "munmap", "mremap", "dontneed", "pageout", "mergeable",
            "mprotect", "fork", "child-read", "child-write", "child-exit", "ksm", "migrate", "exit",
        ]
        #expect(operations.subtracting(seen).isEmpty, "no script uses \(operations.subtracting(seen).sorted())")
        #expect(kinds == Set(MappingKind.allCases))
        #expect(protections == Set(Protection.allCases))
    }
}

/// Examples/KernelDiff, from this file's place in the repository.
let libraryDirectory: String = {
    var path = #filePath
    for _ in 0..<3 { path = String(path[..<path.lastIndex(of: "/")!]) }
    return path + "/Examples/KernelDiff"
}()

func libraryScripts() throws -> [Script] {
    let paths = try #require(scriptPaths(for: libraryDirectory), "no script directory at \(libraryDirectory)")
    return try paths.map { try ScriptParser.read(path: $0) }
}

func libraryKnownDifferences() throws -> KnownDifferences {
    try KnownDifferences.read(path: libraryDirectory + "/known-differences")
}
