import Synchronization

#if canImport(Glibc)
import Glibc
#endif

/// The signal that asked the command to stop (SIGINT, SIGTERM or SIGHUP), or 0.
let stopSignal = Atomic<Int32>(0)

/// Whether a second stop signal ends the process at once (`run`, whose
/// teardown may wait on a plugin) rather than being noted like the first.
private let secondSignalEndsProcess = Atomic<Bool>(false)

/// Ctrl-C (and SIGTERM, SIGHUP) as a request: the handler only records the
/// signal in `stopSignal` (an atomic store, async-signal-safe), and the
/// command stops its work, reports what it did and exits `128 + signal`.
enum StopSignals {
    /// Installs the handlers. A signal the process was started ignoring
    /// (`nohup`, a background job) stays ignored. The three are unblocked:
    /// a parent may have started us with them blocked (Foundation's
    /// `Process` on Linux does), and a blocked SIGINT would be lost.
    static func install(secondEndsProcess: Bool) {
        secondSignalEndsProcess.store(secondEndsProcess, ordering: .relaxed)
        let ignore = unsafeBitCast(SIG_IGN, to: Int.self)
        var signals = sigset_t()
        sigemptyset(&signals)
        for number in [SIGINT, SIGTERM, SIGHUP] {
            let previous = signal(number) { received in
                let first = stopSignal.compareExchange(expected: 0, desired: received, ordering: .relaxed).exchanged
                if !first && secondSignalEndsProcess.load(ordering: .relaxed) {
                    // The user asked twice: end now, as the signal would have.
                    signal(received, SIG_DFL)
                    raise(received)
                }
            }
            if let previous, unsafeBitCast(previous, to: Int.self) == ignore { _ = signal(number, SIG_IGN) }
            sigaddset(&signals, number)
        }
        pthread_sigmask(SIG_UNBLOCK, &signals, nil)
    }

    /// The stop signal received so far, if any.
    static var received: Int32? {
        let number = stopSignal.load(ordering: .relaxed)
        return number == 0 ? nil : number
    }

    /// The exit status of a command stopped by `number`: 128 + the signal,
    /// as a shell reports a process the signal ended (130 for Ctrl-C).
    static func exitStatus(for number: Int32) -> Int32 { 128 + number }
}
