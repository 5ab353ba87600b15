#if canImport(Glibc)
import Glibc
#endif
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
            #expect(user.0 != nil && user.0 == kernel.0, "\(strategy) seed \(seed): the output differs")
            #expect(user.1 == kernel.1, "\(strategy) seed \(seed): \(user.1) vs \(kernel.1)")
            #expect(user.2 == kernel.2, "\(strategy) seed \(seed): the traces differ")
            #expect(user.1.switches > 100, "\(strategy) seed \(seed): only \(user.1.switches) hand-overs were compared")
        }
    }

    /// Every thread keeps its thread control block across hand-overs: its
    /// thread-specific data, `pthread_self`, `errno` and identity are its
    /// own, however often the one kernel thread switched away and back.
    @Test func eachThreadKeepsItsOwnThreadState() throws {
        try #require(ControlledScheduler.canHandOverInUserSpace, "this machine cannot hand over in user space")
        var key = pthread_key_t()
        try #require(pthread_key_create(&key, nil) == 0)
        defer { pthread_key_delete(key) }
        let sharedKey = key
        let threads = 12
        let rounds = 200 * stressScale
        for seed in testSeed..<testSeed + 3 {
            let (result, statistics, _) = controlled(.random(switchProbability: 0.5), seed: seed, inUserSpace: true) { domain -> [String] in
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
