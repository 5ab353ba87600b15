#if canImport(Glibc)
import Glibc
#endif
import CLabSyncShims
import Foundation
import LabSync
import Synchronization
import TestSupport
import Testing

/// Handing over in user space (one kernel thread switching between the
/// run's threads) against handing over through the kernel: the same run,
/// and each thread still a thread of its own.
@Suite("Borrowed threads: the hand-over in user space")
struct BorrowedThreadsTests {
    /// Both hand-overs take the same steps in the same order and give the
    /// same output, for every strategy: only the cost differs.
    @Test(arguments: ControlledSchedulerTests.strategies)
    func bothHandOversGiveTheSameRun(_ strategy: ScheduleStrategy) throws {
        try #require(ControlledScheduler.canHandOverInUserSpace, "this machine cannot hand over in user space")
        let program: @Sendable (SyncDomain) -> [Int] = { ControlledSchedulerTests.mixedProgram($0, threads: 12, rounds: 20 * stressScale) }
        for seed in testSeed..<testSeed + 2 {
            let user = controlled(strategy, seed: seed, keep: 1 << 20, inUserSpace: true, program)
            let kernel = controlled(strategy, seed: seed, keep: 1 << 20, inUserSpace: false, program)
            // A machine without FSGSBASE writes the thread pointer with a system call.
            let bySystemCall = controlled(strategy, seed: seed, keep: 1 << 20, inUserSpace: true, threadPointerBySystemCall: true, program)
            #expect(user.0 != nil && user.0 == kernel.0, "\(strategy) seed \(seed): the output differs")
            #expect(user.1 == kernel.1, "\(strategy) seed \(seed): \(user.1) vs \(kernel.1)")
            #expect(user.2 == kernel.2, "\(strategy) seed \(seed): the traces differ")
            #expect(bySystemCall.0 == user.0 && bySystemCall.1 == user.1 && bySystemCall.2 == user.2, "\(strategy) seed \(seed): arch_prctl differs")
            #expect(user.1.switches > 100, "\(strategy) seed \(seed): only \(user.1.switches) hand-overs were compared")
        }
    }

    /// Every thread keeps its thread control block across hand-overs: its
    /// thread-specific data, `pthread_self`, `errno` and identity are its
    /// own, however often the one kernel thread switched away and back.
    @Test(arguments: [false, true])
    func eachThreadKeepsItsOwnThreadState(threadPointerBySystemCall: Bool) throws {
        try #require(ControlledScheduler.canHandOverInUserSpace, "this machine cannot hand over in user space")
        var key = pthread_key_t()
        try #require(pthread_key_create(&key, nil) == 0)
        defer { pthread_key_delete(key) }
        let sharedKey = key
        let threads = 12
        let rounds = 200 * stressScale
        for seed in testSeed..<testSeed + 3 {
            let (result, statistics, _) = controlled(
                .random(switchProbability: 0.5), seed: seed, inUserSpace: true, threadPointerBySystemCall: threadPointerBySystemCall
            ) { domain -> [String] in
                let wrong = Unsynchronised([String]())
                let selves = Unsynchronised([Int: UInt]())
                let tids = Unsynchronised([Int: Int32]())
                let handles = (0..<threads).map { index in
                    domain.spawnThread(named: "own-\(index)") {
                        let mine = UnsafeMutableRawPointer(bitPattern: 0x1000 + index)
                        pthread_setspecific(sharedKey, mine)
                        let me = pthread_self()
                        selves.value[index] = me
                        tids.value[index] = ThreadIdentity.current.tid
                        for round in 0..<rounds {
                            errno = Int32(index * 1_000 + round % 1_000)
                            domain.yield()
                            if errno != Int32(index * 1_000 + round % 1_000) { wrong.value.append("\(index): errno \(errno) in round \(round)") }
                            if pthread_getspecific(sharedKey) != mine { wrong.value.append("\(index): another thread's data in round \(round)") }
                            if pthread_self() != me { wrong.value.append("\(index): pthread_self changed in round \(round)") }
                            if ThreadIdentity.current.tid != tids.value[index] { wrong.value.append("\(index): identity changed in round \(round)") }
                        }
                    }
                }
                for handle in handles { handle.join() }
                if Set(selves.value.values).count != threads { wrong.value.append("threads share a pthread_self: \(selves.value)") }
                if Set(tids.value.values).count != threads { wrong.value.append("threads share a thread id: \(tids.value)") }
                return Array(wrong.value.prefix(10))
            }
            #expect(result == [], "seed \(seed)")
            #expect(statistics.switches > UInt64(threads * rounds / 4), "seed \(seed): \(statistics.switches) switches")
        }
    }

    /// A thread that finished leaves no kernel thread behind: its own kernel
    /// thread, parked while the carrier ran it, exits.
    @Test func finishedThreadsLeaveNoKernelThread() throws {
        try #require(ControlledScheduler.canHandOverInUserSpace, "this machine cannot hand over in user space")
        let (result, _, _) = controlled(.pct(depth: 3), seed: testSeed, inUserSpace: true) { domain -> [Int32] in
            let tids = Unsynchronised([Int32]())
            let lock = SleepingLock("tids", domain: domain)
            let handles = (0..<40).map { index in
                domain.spawnThread(named: "short-\(index)") {
                    lock.withLock { tids.value.append(ThreadIdentity.current.tid) }
                    domain.sleep(for: .microseconds(index))
                }
            }
            for handle in handles { handle.join() }
            return lock.withLock { tids.value }
        }
        let tids = try #require(result)
        #expect(Set(tids).count == 40)
        // They exit on their own kernel threads, after the run: wait a while.
        var alive = tids
        for _ in 0..<500 where !alive.isEmpty {
            alive = alive.filter { FileManager.default.fileExists(atPath: "/proc/self/task/\($0)") }
            if !alive.isEmpty { usleep(10_000) }
        }
        #expect(alive.isEmpty, "kernel threads of finished threads still live: \(alive)")
    }
}

/// The biased state lock: the carrier's path (no atomic read-modify-write)
/// against other threads' (membarrier), under real contention.
@Suite("Borrowed threads: the biased state lock")
struct BiasedLockTests {
    /// One carrier and other threads increment a plain counter under the
    /// lock; no two are ever inside at once and no increment is lost. With
    /// one other thread the carrier is mostly on its own path (a carrier that
    /// ignored the announcement, or another thread that did not wait for the
    /// carrier's flag, is seen here within a run); with three, the others
    /// also queue behind each other.
    @Test(arguments: [1, 3])
    func theCarrierAndOtherThreadsExcludeEachOther(others: Int) throws {
        try #require(mmulab_biased_lock_supported() != 0, "membarrier's private expedited command is unavailable")
        let lock = UnsafeMutablePointer<mmulab_biased_lock>.allocate(capacity: 1)
        lock.initialize(to: mmulab_biased_lock())
        defer { lock.deallocate() }
        let sharedLock = Unsynchronised(lock)
        let shared = Unsynchronised((count: 0, inside: 0, overlaps: 0, spins: 0))
        let otherRounds = 300 * stressScale
        let othersDone = Atomic<Int>(0)
        let carrierRounds = Atomic<Int>(0)
        @Sendable func critical(spins: Int) {
            shared.value.inside += 1
            if shared.value.inside != 1 { shared.value.overlaps += 1 }
            shared.value.count += 1
            // Long enough that a thread that got in meanwhile is seen.
            for _ in 0..<spins { shared.value.spins &+= 1 }
            if shared.value.inside != 1 { shared.value.overlaps += 1 }
            shared.value.inside -= 1
        }
        // The carrier goes on for as long as the others run (they start once
        // it has), and leaves the lock free between its turns, so that the
        // others get in while it is about to take it again.
        let carrierStarted = Atomic<Bool>(false)
        let carrier = PthreadRunner {
            var rounds = 0
            var outside = 0
            while othersDone.load(ordering: .relaxed) < others {
                mmulab_biased_lock_carrier(sharedLock.value)
                critical(spins: 50)
                mmulab_biased_unlock_carrier(sharedLock.value)
                rounds += 1
                carrierStarted.store(true, ordering: .relaxed)
                for _ in 0..<200 { outside &+= 1 }
            }
            carrierRounds.store(rounds, ordering: .relaxed)
        }
        let contenders = (0..<others).map { _ in
            PthreadRunner {
                while !carrierStarted.load(ordering: .relaxed) { sched_yield() }
                var outside = 0
                for _ in 0..<otherRounds {
                    mmulab_biased_lock_other(sharedLock.value)
                    // Longer than the carrier's pause: it comes back meanwhile.
                    critical(spins: 2_000)
                    mmulab_biased_unlock_other(sharedLock.value)
                    // Then nobody else wants the lock for a while: the
                    // carrier takes its own path again.
                    for _ in 0..<5_000 { outside &+= 1 }
                }
                othersDone.add(1, ordering: .relaxed)
            }
        }
        carrier.join()
        for contender in contenders { contender.join() }
        let carried = carrierRounds.load(ordering: .relaxed)
        #expect(shared.value.overlaps == 0, "two threads were inside the lock at once \(shared.value.overlaps) times")
        #expect(shared.value.count == carried + others * otherRounds, "increments were lost: \(shared.value.count)")
        #expect(carried > 0)
        #expect(lock.pointee.others == 0 && lock.pointee.carrier_holds == 0 && lock.pointee.word == 0, "the lock is left taken")
    }

    /// A run handing over in user space while threads it did not make read
    /// its state all along: they get in, the run replays as without them.
    @Test func threadsOutsideTheRunGetInWithoutChangingIt() throws {
        try #require(ControlledScheduler.canHandOverInUserSpace, "this machine cannot hand over in user space")
        let program: @Sendable (SyncDomain) -> [Int] = { ControlledSchedulerTests.mixedProgram($0, threads: 8, rounds: 20 * stressScale) }
        let quiet = controlled(.pct(depth: 3), seed: testSeed, inUserSpace: true, program)
        var configuration = ControlledScheduler.Configuration(strategy: .pct(depth: 3), seed: testSeed)
        configuration.handsOverInUserSpace = true
        let scheduler = ControlledScheduler(configuration)
        let domain = SyncDomain(scheduler: scheduler)
        let stop = Atomic<Bool>(false)
        // The largest step count a watcher saw that is neither 0 (before the
        // run) nor the last: it got in while the run went on.
        let midRun = Atomic<UInt64>(0)
        let watchers = (0..<2).map { _ in
            PthreadRunner {
                var seen: [UInt64] = []
                while !stop.load(ordering: .relaxed) {
                    let steps = scheduler.statistics.steps
                    if seen.last != steps && seen.count < 100_000 { seen.append(steps) }
                }
                // The run is over: its last count is the largest.
                let last = seen.max() ?? 0
                let middle = seen.filter { $0 != 0 && $0 != last }.max() ?? 0
                _ = midRun.max(middle, ordering: .relaxed)
            }
        }
        let outcome = scheduler.run { program(domain) }
        stop.store(true, ordering: .relaxed)
        for watcher in watchers { watcher.join() }
        guard case .finished(let output, _) = outcome else {
            Issue.record("the watched run did not finish: \(outcome)")
            return
        }
        #expect(output == quiet.0, "the output differs with watchers")
        #expect(scheduler.statistics == quiet.1, "the schedule differs with watchers")
        #expect(midRun.load(ordering: .relaxed) > 0, "the watchers never got the lock while the run went on")
    }
}

/// A plain POSIX thread for the lock tests (not a lab thread).
final class PthreadRunner: @unchecked Sendable {
    private var handle = pthread_t()
    init(_ body: @escaping @Sendable () -> Void) {
        let box = Unmanaged.passRetained(Box(body)).toOpaque()
        let status = pthread_create(&handle, nil, { raw in
            Unmanaged<Box>.fromOpaque(raw!).takeRetainedValue().body()
            return nil
        }, box)
        precondition(status == 0, "pthread_create: \(status)")
    }
    func join() { pthread_join(handle, nil) }
    private final class Box {
        let body: @Sendable () -> Void
        init(_ body: @escaping @Sendable () -> Void) { self.body = body }
    }
}
