// The C below LabSync: wrappers for the glibc and CPU facilities Swift's
// Glibc module does not import (they need _GNU_SOURCE or are compiler
// builtins), the futex words the controlled scheduler hands over and locks
// its state with, and its hand-over in user space ("Borrowed threads",
// fiber.c). Used by LabSync (and, for a thread's label, by the oops handler).
#ifndef CLABSYNCSHIMS_H
#define CLABSYNCSHIMS_H

#include <stdint.h>

/// The calling thread's kernel thread id (gettid).
int32_t mmulab_gettid(void);

/// Names the calling thread for debuggers and /proc (at most 15 bytes kept).
void mmulab_set_thread_name(const char *name);

/// A spin-wait hint to the CPU (x86 `pause`, arm64 `yield`).
static inline void mmulab_cpu_relax(void) {
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#elif defined(__aarch64__)
    __asm__ __volatile__("yield");
#endif
}

/// The calling thread's execution context (LabSync's `ExecutionContext`,
/// unretained), NULL until the thread first asks for it and again once its
/// thread-exit destructor ran. A thread-local word: reading it costs a load
/// from the thread pointer where `pthread_getspecific` cost a call (and its
/// key, a lazy global, a once-check) on every lock and unlock.
extern __thread void *mmulab_thread_context;

static inline void *mmulab_current_context(void) {
    return mmulab_thread_context;
}

static inline void mmulab_set_current_context(void *context) {
    mmulab_thread_context = context;
}

/// The calling thread's `ScheduledThread` (LabSync's controlled scheduler,
/// unretained), NULL on a thread no controlled scheduler made: a
/// thread-local word, read at every scheduling point.
extern __thread void *mmulab_thread_scheduled;

static inline void *mmulab_current_scheduled(void) {
    return mmulab_thread_scheduled;
}

static inline void mmulab_set_current_scheduled(void *thread) {
    mmulab_thread_scheduled = thread;
}

/// The calling thread's name and kernel thread id as a controlled run knows
/// them (its threads may run on another kernel thread than their own: a
/// crash report prints these rather than the kernel's); NULL and 0 on
/// other threads. Set before the thread first runs, cleared as it ends.
extern __thread const char *mmulab_thread_label;
extern __thread int32_t mmulab_thread_label_tid;

/// Sets the calling thread's label (copied; NULL clears and frees it).
void mmulab_set_thread_label(const char *name, int32_t tid);

// A gate: a word one thread waits on until another opens it (a binary
// semaphore with one waiter: the controlled scheduler's hand-off, which
// wakes exactly the thread that runs next, under no shared lock).
// 0: closed; 1: open; 2: closed, and its waiter sleeps in the kernel.

/// Opens `gate`. Everything the caller wrote before happens before the
/// waiter's `mmulab_gate_pass` returns (release / acquire). Makes a system
/// call only if the waiter already sleeps.
void mmulab_gate_open(uint32_t *gate);

/// Waits until `gate` is open and closes it again (sleeping in the kernel,
/// futex, while it is closed). An open that came first is not lost.
void mmulab_gate_pass(uint32_t *gate);

// The controlled scheduler's state lock and its conditions: futex words,
// with the common paths inline, taken at every scheduling point.
//
// A word lock (0: free; 1: held; 2: held, and a taker may sleep; Drepper,
// "Futexes Are Tricky", mutex 3) costs one compare-and-swap to take and one
// exchange to let go. A biased lock adds a path without either for the one
// kernel thread that runs a run handing over in user space (the carrier):
// it raises its flag and checks that no other thread wants the lock, with
// only compiler barriers; another thread announces itself, then makes every
// running thread of the process execute a full barrier (membarrier, private
// expedited), so that of the carrier's flag and its announcement at least
// one side sees the other's (the asymmetric Dekker pattern of user-space
// RCU), takes the word, and waits until the carrier's flag is down. The
// carrier that finds someone announced lowers its flag, wakes them, and
// queues for the word like them.

/// Slow path of `mmulab_word_lock`: sleeps until the word is free.
void mmulab_word_lock_contended(uint32_t *word);
/// Slow path of `mmulab_word_unlock`: wakes one sleeper.
void mmulab_word_wake(uint32_t *word);

/// Takes the word lock `word`, with acquire ordering.
static inline void mmulab_word_lock(uint32_t *word) {
    uint32_t expected = 0;
    if (__builtin_expect(__atomic_compare_exchange_n(word, &expected, 1, 0, __ATOMIC_ACQUIRE, __ATOMIC_RELAXED), 1)) return;
    mmulab_word_lock_contended(word);
}

/// Lets go of the word lock `word` (release ordering), waking a sleeper if any.
static inline void mmulab_word_unlock(uint32_t *word) {
    if (__builtin_expect(__atomic_exchange_n(word, 0, __ATOMIC_RELEASE) == 1, 1)) return;
    mmulab_word_wake(word);
}

typedef struct mmulab_biased_lock {
    /// The word lock every other thread takes (and the carrier, when it
    /// found one of them).
    uint32_t word;
    /// 1 while the carrier holds the lock on its own path.
    uint32_t carrier_holds;
    /// Threads other than the carrier that are taking or hold the lock.
    uint32_t others;
    /// The carrier holds `word` (it found another thread; carrier only).
    uint32_t carrier_took_word;
} mmulab_biased_lock;

/// Whether biased locks can be used here (membarrier's private expedited
/// command, registered for the process by the first call). Once.
int mmulab_biased_lock_supported(void);

void mmulab_biased_lock_carrier_contended(mmulab_biased_lock *lock);
void mmulab_biased_unlock_carrier_contended(mmulab_biased_lock *lock);

/// Takes `lock` on the carrier (acquire ordering).
static inline void mmulab_biased_lock_carrier(mmulab_biased_lock *lock) {
    __atomic_store_n(&lock->carrier_holds, 1, __ATOMIC_RELAXED);
    // A compiler barrier only: the other side's membarrier orders the CPU.
    __atomic_signal_fence(__ATOMIC_SEQ_CST);
    if (__builtin_expect(__atomic_load_n(&lock->others, __ATOMIC_ACQUIRE) == 0, 1)) return;
    mmulab_biased_lock_carrier_contended(lock);
}

/// Lets go of `lock` on the carrier (release ordering).
static inline void mmulab_biased_unlock_carrier(mmulab_biased_lock *lock) {
    if (__builtin_expect(lock->carrier_took_word != 0, 0)) {
        mmulab_biased_unlock_carrier_contended(lock);
        return;
    }
    __atomic_store_n(&lock->carrier_holds, 0, __ATOMIC_RELEASE);
    __atomic_signal_fence(__ATOMIC_SEQ_CST);
    if (__builtin_expect(__atomic_load_n(&lock->others, __ATOMIC_RELAXED) != 0, 0)) mmulab_word_wake(&lock->carrier_holds);
}

/// Takes `lock` on any other thread (a system call: membarrier).
void mmulab_biased_lock_other(mmulab_biased_lock *lock);
/// Lets go of `lock` on any other thread.
void mmulab_biased_unlock_other(mmulab_biased_lock *lock);

/// A condition of a state lock: `sequence` moves at every broadcast;
/// `waiters` (touched with the lock held) says whether a broadcast must wake.
typedef struct mmulab_condition {
    uint32_t sequence;
    uint32_t waiters;
} mmulab_condition;

/// With the lock held, before letting go of it to wait: the sequence to
/// sleep on (a broadcast after this moves it).
static inline uint32_t mmulab_condition_prepare(mmulab_condition *condition) {
    condition->waiters++;
    return __atomic_load_n(&condition->sequence, __ATOMIC_RELAXED);
}

/// Without the lock: sleeps until the sequence moved from `sequence` (or
/// `timeout_ns` passed, if not negative, or spuriously). Then the caller
/// takes the lock again and calls `mmulab_condition_done`.
void mmulab_condition_sleep(mmulab_condition *condition, uint32_t sequence, int64_t timeout_ns);

static inline void mmulab_condition_done(mmulab_condition *condition) { condition->waiters--; }

/// With the lock held: wakes every waiter of `condition`.
void mmulab_condition_broadcast(mmulab_condition *condition);

/// The processor `offset` places after the one the calling thread runs on
/// now, among the processors it may run on (-1 if they cannot be read):
/// offset 0 keeps a process where the kernel's load balancer put it, so
/// parallel processes (a campaign's jobs) stay spread as it spread them.
int32_t mmulab_pick_cpu(uint32_t offset);

/// Lets the calling thread run only on processor `cpu`; returns 0 or an errno.
int32_t mmulab_pin_to_cpu(int32_t cpu);

// Borrowed threads: the controlled scheduler's hand-over in user space.
//
// Every thread of a controlled run is a real POSIX thread, with its own
// stack and thread control block (so its thread-local storage, errno,
// pthread_self and the Swift runtime's per-thread state are its own). In
// this mode one kernel thread, the carrier (the run's root), runs them all:
// every other thread saves its context and parks its kernel thread on a
// small stack of its own (`mmulab_fiber_park`), and a hand-over switches
// the carrier's stack pointer, callee-saved registers and thread pointer to
// the next thread's (`mmulab_fiber_switch`): no system call, no kernel
// scheduler, where a hand-over between kernel threads costs two futex calls
// and a kernel context switch. A finished thread's kernel thread is woken
// (`mmulab_fiber_release`) to resume its last context and exit as any thread
// exits, once the carrier has left its stack.
//
// Only on x86-64 (`mmulab_fiber_supported`); the thread pointer is written
// with `wrfsbase` where the kernel allows it, else with `arch_prctl`.

/// Bytes of the stack a parked kernel thread waits on.
#define MMULAB_FIBER_PARK_STACK (64 * 1024)
/// Bytes of the carrier's alternate signal stack.
#define MMULAB_CARRIER_ALTSTACK (128 * 1024)

typedef struct mmulab_fiber {
    /// The saved context (on the thread's own stack) while it does not run.
    void *stack_pointer;
    /// Its thread control block (x86-64: the %fs base).
    uintptr_t thread_pointer;
    /// 0: starting; 1: parked (its context is saved, it may be switched to);
    /// 2: released (its kernel thread resumes its last context).
    uint32_t state;
    void *park_stack;
} mmulab_fiber;

/// Whether this machine can switch borrowed threads (x86-64 only).
int mmulab_fiber_supported(void);

/// Whether the kernel lets user space write the thread pointer (x86-64
/// FSGSBASE, Linux 5.9 and later on CPUs that have it): `wrfsbase` then
/// costs nanoseconds, where `arch_prctl` costs a system call.
int mmulab_fiber_can_write_thread_pointer(void);

/// Called by the carrier on its own kernel thread before it first switches:
/// records its thread pointer in `fiber` (its context is saved by switches).
void mmulab_fiber_adopt(mmulab_fiber *fiber);

/// Called by a thread of the run on its own kernel thread, before it first
/// runs: saves its context into `fiber` and parks its kernel thread (every
/// signal blocked) on a stack of its own. Returns on the carrier, the first
/// time the carrier switches to `fiber`.
void mmulab_fiber_park(mmulab_fiber *fiber);

/// Waits until `fiber`'s thread has parked (its context can be switched to).
void mmulab_fiber_await_parked(mmulab_fiber *fiber);

/// On the carrier: saves the running thread's context into `from` and
/// resumes `to`'s (stack, registers, thread pointer: with `wrfsbase` if
/// `direct`, which needs `mmulab_fiber_can_write_thread_pointer`, else with
/// `arch_prctl`). Returns when some later switch resumes `from`. Both must
/// be distinct; `to` must be parked.
void mmulab_fiber_switch(mmulab_fiber *from, const mmulab_fiber *to, int direct);

/// Wakes `fiber`'s parked kernel thread to resume the context its last
/// switch saved (on its own kernel thread). Only once the carrier has left
/// that context for good (a finished thread), from another context.
void mmulab_fiber_release(mmulab_fiber *fiber);

/// Frees the park stack (once the kernel thread has left it).
void mmulab_fiber_free_park_stack(mmulab_fiber *fiber);

/// Gives the calling kernel thread (the carrier) an alternate signal stack
/// if it has none, so that a plugin's crash on any borrowed thread is
/// handled on memory that lives as long as the carrier; returns it (NULL: it
/// had one already, or none could be made). `..._end` takes it back.
void *mmulab_carrier_altstack_begin(void);
void mmulab_carrier_altstack_end(void *stack);

#endif
