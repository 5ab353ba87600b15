import Foundation
import Testing

/// `mmulab kernel-diff` as a user runs it: bad input is refused with
/// file:line before anything runs; a script runs on this machine's kernel
/// (or the command says plainly why it cannot, exit 3); the fault switch
/// makes it exit 1.
@Suite("mmulab kernel-diff")
struct KernelDiffCommandTests {
    /// Root with /dev/kvm: the real kernel is expected to be usable (the runner mounts tracefs itself).
    static let kernelExpected = getuid() == 0 && access("/dev/kvm", R_OK | W_OK) == 0

    static let script = """
        # a touched page made read-only, then written by the guest
        map a anon 2
        write a all 1
        guest-write a 0 2
        mprotect a r
        guest-write a 0 4
        guest-read a 0
        exit
        """

    @Test func aBadScriptIsRefusedWithFileAndLine() throws {
        let sandbox = try Sandbox()
        let path = try sandbox.write("bad.kdiff", "map a anon 2\nwrite a 5\n")
        expectBadInput(try sandbox.mmulab(["kernel-diff", path]), mentions: ["bad.kdiff:2: page 5 is past the end of `a` (2 pages)"])
        expectBadInput(try sandbox.mmulab(["kernel-diff", sandbox.path("missing.kdiff")]), mentions: ["no such script file or directory"])
        let list = try sandbox.write("list", "reason r: why\nx 1 nope pagemap a\n")
        let good = try sandbox.write("good.kdiff", "map a anon 1\nexit\n")
        expectBadInput(try sandbox.mmulab(["kernel-diff", good, "--known", list]), mentions: ["list:2: no `reason nope:` line for this row"])
        expectBadInput(try sandbox.mmulab(["kernel-diff", good, "--inject", "free-everything"]), mentions: ["free-everything"])
    }

    @Test func aScriptRunsOnTheRealKernelOrSaysWhyNot() throws {
        let sandbox = try Sandbox()
        let path = try sandbox.write("ro.kdiff", Self.script)
        let outcome = try sandbox.mmulab(["kernel-diff", path, "--verbose"])
        if outcome.status == 3 {
            #expect(!Self.kernelExpected, "root with /dev/kvm, yet skipped:\n\(outcome.transcript)")
            #expect(outcome.stderr.contains("skipped: the real kernel cannot be used here:"), "\(outcome.transcript)")
            return
        }
        #expect(outcome.status == 0, "\(outcome.transcript)")
        #expect(outcome.stdout.contains("== ro ("), "\(outcome.transcript)")
        #expect(outcome.stdout.contains("invalidated        kernel: a[0-1] (self)"), "\(outcome.transcript)")
        #expect(outcome.stdout.contains("guest-write a[0]   kernel: fault"), "\(outcome.transcript)")
        #expect(outcome.stdout.contains("1 scripts, 7 steps compared, 7 agree (100.0%)"), "\(outcome.transcript)")

        let broken = try sandbox.mmulab(["kernel-diff", path, "--inject", "skip-mprotect-invalidation"])
        #expect(broken.status == 1, "\(broken.transcript)")
        #expect(broken.stdout.contains("mprotect a r       DIFFER"), "\(broken.transcript)")
        #expect(broken.stdout.contains("3 UNEXPECTED"), "\(broken.transcript)")
    }
}
