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

#endif
