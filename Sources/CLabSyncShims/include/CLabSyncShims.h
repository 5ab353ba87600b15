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

#endif
