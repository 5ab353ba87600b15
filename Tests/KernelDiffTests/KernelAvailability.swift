import Testing

#if canImport(Glibc)
import Glibc
#endif

@testable import KernelDiff

/// Whether the differential suite can run here: root, /dev/kvm, and a
/// runner that finds tracefs (mounting it if need be), KVM's tracepoints
/// and PFNs in pagemap. Elsewhere the tests say plainly that they skipped
/// and why. With `MMULAB_REQUIRE_KERNEL_DIFF=1` (CI sets it: its machines
/// have all of that) nothing is skipped: a missing piece fails the tests.
enum KernelAvailability {
    static let probe: (usable: Bool, reason: String) = {
        if let required = getenv("MMULAB_REQUIRE_KERNEL_DIFF"), String(cString: required) == "1" {
            return (true, "required by MMULAB_REQUIRE_KERNEL_DIFF")
        }
        guard geteuid() == 0 else { return (false, "skipped the differential suite against the real kernel: not root") }
        guard access("/dev/kvm", R_OK | W_OK) == 0 else {
            return (false, "skipped the differential suite against the real kernel: no usable /dev/kvm")
        }
        do {
            let side = try KernelSide(runnerPath: defaultRunnerPath())
            side.finish()
            return (true, "usable")
        } catch let unavailable as KernelUnavailable {
            return (false, "skipped the differential suite against the real kernel: \(unavailable.reason)")
        } catch {
            // A missing or broken runner on a machine that has the kernel is a failure, not a skip.
            return (true, "runner problem: \(error)")
        }
    }()

    static var usable: Bool { probe.usable }
    static var reason: Comment { Comment(rawValue: probe.reason) }
}
