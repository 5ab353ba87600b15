#if canImport(Glibc)
import Glibc
#endif

/// Multiplies the iteration counts of storms and randomised tests when
/// `MMULAB_STRESS` is set (see README): the default run stays fast, the
/// stress run goes long.
public let stressScale: Int = {
    guard let raw = getenv("MMULAB_STRESS"), let value = Int(String(cString: raw)), value > 0 else { return 1 }
    return value
}()

/// The seed of randomised tests: `MMULAB_SEED` if set, else a fixed one.
/// Every failure message carries it, so a failing run replays its choices.
public let testSeed: UInt64 = {
    guard let raw = getenv("MMULAB_SEED"), let value = UInt64(String(cString: raw)) else { return 0x6d6d_756c_6162 }
    return value
}()
