#if canImport(Glibc)
import Glibc
#endif

/// Multiplies iteration counts when `MMULAB_STRESS` is set (see README):
/// the default test run stays fast, the stress run goes long.
let stressScale: Int = {
    guard let raw = getenv("MMULAB_STRESS"), let value = Int(String(cString: raw)), value > 0 else { return 1 }
    return value
}()
