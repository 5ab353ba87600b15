#if canImport(Glibc)
import Glibc
#endif
@testable import PluginHost
import Synchronization
import Testing
import TestSupport

/// The way a plugin's handles reach their instance context without a weak
/// reference: calls that got in finish before `detach` returns, and none
/// gets in after.
@Suite("Context links")
struct ContextLinkTests {
    /// Stands for a context: `alive` goes false where a deinit would
    /// destroy the fields, right after `detach` returned.
    final class Target: @unchecked Sendable {
        let alive = Atomic<Bool>(true)
    }

    @Test func noCallSeesTheTargetGoAndNoneGetsInAfterDetach() {
        for round in 0..<(20 * stressScale) {
            let target = Target()
            let link = ContextLink<Target>()
            link.attach(target)
            let users = 3
            let started = Atomic<Int>(0)
            let sawDead = Atomic<Int>(0)
            let afterDetach = Atomic<Int>(0)
            let detached = Atomic<Bool>(false)
            let stop = Atomic<Bool>(false)
            let threads = (0..<users).map { _ in
                PluginTestThread {
                    started.add(1, ordering: .relaxed)
                    while !stop.load(ordering: .relaxed) {
                        let detachedBefore = detached.load(ordering: .acquiring)
                        let got = link.withContext { target -> Bool in
                            // A little work inside, as a report does.
                            for _ in 0..<100 where !target.alive.load(ordering: .relaxed) { sawDead.add(1, ordering: .relaxed) }
                            return true
                        }
                        if got != nil && detachedBefore { afterDetach.add(1, ordering: .relaxed) }
                    }
                }
            }
            while started.load(ordering: .relaxed) < users { sched_yield() }
            usleep(UInt32(100 + round % 7 * 50))
            link.detach { sched_yield() }
            detached.store(true, ordering: .releasing)
            target.alive.store(false, ordering: .relaxed)
            usleep(200)
            stop.store(true, ordering: .relaxed)
            for thread in threads { thread.join() }
            #expect(sawDead.load(ordering: .relaxed) == 0, "round \(round): a call ran on while the target went")
            #expect(afterDetach.load(ordering: .relaxed) == 0, "round \(round): calls got in after detach")
            #expect(link.withContext { _ in true } == nil, "round \(round): a detached link still gives its target")
        }
    }
}

/// A plain POSIX thread (not a lab thread).
final class PluginTestThread: @unchecked Sendable {
    private var handle = pthread_t()
    init(_ body: @escaping @Sendable () -> Void) {
        let box = Unmanaged.passRetained(Box(body)).toOpaque()
        precondition(pthread_create(&handle, nil, { raw in
            Unmanaged<Box>.fromOpaque(raw!).takeRetainedValue().body()
            return nil
        }, box) == 0)
    }
    func join() { pthread_join(handle, nil) }
    private final class Box {
        let body: @Sendable () -> Void
        init(_ body: @escaping @Sendable () -> Void) { self.body = body }
    }
}
