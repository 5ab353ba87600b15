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

#endif
