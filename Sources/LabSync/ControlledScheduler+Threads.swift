#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif
import CLabSyncShims

// The threads of a controlled run: how each is made and started, how it
// waits until it is current (a gate of its own, or, handing over in user
// space, a parked kernel thread while the carrier runs it), how it ends,
// and the stall watch beside them.
extension ControlledScheduler {
    /// A new, enabled thread record (mutex held).
    func makeThread(named name: String) -> ScheduledThread {
        let thread = ScheduledThread(index: threads.count, name: name, scheduler: self)
        threads.append(thread)
        names.append(name)
        threadsMade += 1
        if case .pct(let depth) = configuration.strategy {
            // Distinct with overwhelming probability; ties go to the lower index.
            thread.priority = Int64(depth) + Int64(rng.next() >> 24)
        }
        enable(thread)
        return thread
    }

    /// Starts the real thread behind `thread`; it waits until it is current
    /// before it runs `body`, and hands over when `body` returns (mutex held).
    func startThread(_ thread: ScheduledThread, _ body: @escaping @Sendable () -> Void) {
        var attributes = pthread_attr_t()
        pthread_attr_init(&attributes)
        pthread_attr_setdetachstate(&attributes, Int32(PTHREAD_CREATE_DETACHED))
        defer { pthread_attr_destroy(&attributes) }
        var handle = pthread_t()
        let start = Unmanaged.passRetained(ThreadStart(thread: thread, body: body)).toOpaque()
        let status = pthread_create(&handle, &attributes, { raw in
            let start = Unmanaged<ThreadStart>.fromOpaque(raw!).takeRetainedValue()
            start.thread.scheduler.threadMain(start.thread, start.body)
            return nil
        }, start)
        precondition(status == 0, "pthread_create failed: \(status)")
        // A borrowed thread can be switched to once its context is saved
        // (it sets up and parks without the mutex, which we hold).
        if borrowsThreads && thread.index != 0 { mmulab_fiber_await_parked(thread.fiber) }
    }

    private func threadMain(_ thread: ScheduledThread, _ body: @Sendable () -> Void) {
        mmulab_set_current_scheduled(Unmanaged.passUnretained(thread).toOpaque())
        // Named before it first runs: its context exists before any primitive asks.
        ExecutionContext.current.setScheduledIdentity(name: thread.name, index: thread.index)
        mmulab_set_thread_name(thread.name)
        mmulab_set_thread_label(thread.name, ExecutionContext.current.thread.tid)
        defer { mmulab_set_thread_label(nil, 0) }
        // Before it first runs: the processor's own business, not the schedule's.
        if processor >= 0 { _ = mmulab_pin_to_cpu(processor) }
        if borrowsThreads {
            borrowedThreadMain(thread, body)
            return
        }
        mmulab_gate_pass(thread.gate)
        mutex.lock()
        assert(current === thread, "'\(thread.name)' passed its gate but is not current")
        tick(thread, .start, object: UInt32(thread.index))
        mutex.unlock()
        body()
        mutex.lock()
        let next = finish(thread)
        mutex.unlock()
        mmulab_set_current_scheduled(nil)
        if let next { mmulab_gate_open(next.gate) }
    }

    /// `threadMain` when the run hands over in user space. The root's kernel
    /// thread is the carrier: it passes its gate as usual and then runs every
    /// thread. Any other thread parks its kernel thread at once, and its body
    /// runs on the carrier from the first switch to it; when it finishes, the
    /// carrier leaves it for good and its own kernel thread comes back here
    /// only to exit.
    private func borrowedThreadMain(_ thread: ScheduledThread, _ body: @Sendable () -> Void) {
        var signalStack: UnsafeMutableRawPointer? = nil
        if thread.index == 0 {
            mmulab_gate_pass(thread.gate)
            mmulab_fiber_adopt(thread.fiber)
            // Before any plugin runs here: a crash on any thread is handled
            // on this stack (a thread's own would go when its kernel thread exits).
            signalStack = mmulab_carrier_altstack_begin()
            mutex.lock()
        } else {
            // Returns on the carrier, with the mutex held for us by the
            // thread that switched here.
            mmulab_fiber_park(thread.fiber)
            releaseExiting()
        }
        assert(current === thread, "'\(thread.name)' runs but is not current")
        tick(thread, .start, object: UInt32(thread.index))
        mutex.unlock()
        body()
        mutex.lock()
        let next = finish(thread)
        if thread.index == 0 {
            // The run is over (`finish` said so); the carrier exits as the root.
            mutex.unlock()
            mmulab_carrier_altstack_end(signalStack)
            mmulab_set_current_scheduled(nil)
            return
        }
        guard let next else { parkForever(thread) }
        exiting = thread
        mmulab_fiber_switch(thread.fiber, next.fiber, writesThreadPointerDirectly)
        // Only this thread's own kernel thread comes back here, released by
        // the carrier once it left this stack: it exits, touching nothing shared.
        mmulab_set_current_scheduled(nil)
    }

    /// A real thread that watches the step count while the run lasts and
    /// says, once, which thread has run `stallWarningSeconds` without a
    /// scheduling point (a loop that calls no primitive cannot be preempted).
    func startStallWatch() {
        let seconds = configuration.stallWarningSeconds
        _ = FreeRunningScheduler().spawn(name: "schedule stall watch") { [self] in
            var last = stepCount.load(ordering: .relaxed)
            var still = 0
            while true {
                FreeRunningScheduler().sleep(for: .seconds(1))
                mutex.lock()
                let over = stopped
                let running = current?.name
                mutex.unlock()
                if over { return }
                let now = stepCount.load(ordering: .relaxed)
                still = now == last ? still + 1 : 0
                last = now
                guard still == seconds, let running else { continue }
                let message = "mmulab: controlled schedule: thread '\(running)' has run \(seconds) s (real time) without reaching a "
                    + "scheduling point; it cannot be preempted, so every other thread waits. A loop that calls no lock, wait, sleep "
                    + "or yield must call SyncDomain.preemptionPoint() (a plugin: host->yield).\n"
                _ = message.withCString { write(STDERR_FILENO, $0, strlen($0)) }
            }
        }
    }
}
