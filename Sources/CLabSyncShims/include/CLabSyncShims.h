// Thin C wrappers for the few glibc / CPU facilities that Swift's Glibc
// module does not import (they need _GNU_SOURCE or are compiler builtins).
// Used only by the LabSync module.
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
/// resumes `to`'s (stack, registers, thread pointer). Returns when some
/// later switch resumes `from`. Both must be distinct; `to` must be parked.
void mmulab_fiber_switch(mmulab_fiber *from, const mmulab_fiber *to);

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
