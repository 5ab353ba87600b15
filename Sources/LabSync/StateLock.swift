import CLabSyncShims

/// The controlled scheduler's state lock, taken at every scheduling point.
///
/// A run that hands over through the kernel uses a plain futex word lock. A
/// run that hands over in user space (`ControlledScheduler.borrowsThreads`)
/// uses a biased lock: its threads all run on one kernel thread, the
/// carrier, which takes and lets go of the lock without an atomic
/// read-modify-write; a thread the run did not make (the caller of `run`,
/// a stall watch, a plugin's own thread) pays a system call instead
/// (`CLabSyncShims.h`, "biased lock"). Not recursive. The carrier may let go
/// of it from another of the run's threads than the one that took it (a
/// hand-over keeps it held), as the word lock may.
struct StateLock {
    let state: UnsafeMutablePointer<mmulab_biased_lock>
    private let biased: Bool

    /// `biased`: for a run handing over in user space (plain where the
    /// kernel cannot make the barrier the other side needs).
    init(biased: Bool) {
        state = .allocate(capacity: 1)
        state.initialize(to: mmulab_biased_lock())
        self.biased = biased && mmulab_biased_lock_supported() != 0
    }

    /// Frees the lock (no thread may use it again).
    func deallocate() { state.deallocate() }

    /// Whether the calling thread is one of the run's (its threads keep
    /// this lock's address), that is, the carrier.
    @inline(__always)
    private var onCarrier: Bool {
        guard let raw = mmulab_current_scheduled() else { return false }
        return Unmanaged<ScheduledThread>.fromOpaque(raw)._withUnsafeGuaranteedRef { $0.stateLock == state }
    }

    @inline(__always) func lock() {
        guard biased else { return mmulab_word_lock(&state.pointee.word) }
        if onCarrier { mmulab_biased_lock_carrier(state) } else { mmulab_biased_lock_other(state) }
    }

    @inline(__always) func unlock() {
        guard biased else { return mmulab_word_unlock(&state.pointee.word) }
        if onCarrier { mmulab_biased_unlock_carrier(state) } else { mmulab_biased_unlock_other(state) }
    }
}

/// A condition of a `StateLock`: waiters wait in a loop on their predicate.
struct StateCondition {
    let condition: UnsafeMutablePointer<mmulab_condition>

    init() {
        condition = .allocate(capacity: 1)
        condition.initialize(to: mmulab_condition())
    }

    func deallocate() { condition.deallocate() }

    /// With `lock` held: lets go, sleeps until a broadcast (or for at most
    /// `nanoseconds` of real time, if given, or spuriously), takes it again.
    func wait(_ lock: StateLock, nanoseconds: Int64? = nil) {
        let sequence = mmulab_condition_prepare(condition)
        lock.unlock()
        mmulab_condition_sleep(condition, sequence, nanoseconds.map { max($0, 0) } ?? -1)
        lock.lock()
        mmulab_condition_done(condition)
    }

    /// With the lock held: wakes every waiter.
    func broadcast() { mmulab_condition_broadcast(condition) }
}
