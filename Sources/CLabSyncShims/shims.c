#define _GNU_SOURCE
#include <pthread.h>
#include <sched.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>
#include <linux/futex.h>
#include <limits.h>
#include "CLabSyncShims.h"

__thread void *mmulab_thread_context = NULL;
__thread void *mmulab_thread_scheduled = NULL;

enum { gate_closed = 0, gate_open = 1, gate_sleeping = 2 };

void mmulab_gate_open(uint32_t *gate) {
    // Release: the opener's writes (the scheduler's state) are seen by the
    // waiter, whose acquire load reads this store.
    uint32_t old = __atomic_exchange_n(gate, gate_open, __ATOMIC_RELEASE);
    if (old == gate_sleeping) syscall(SYS_futex, gate, FUTEX_WAKE_PRIVATE, 1, NULL, NULL, 0);
}

void mmulab_gate_pass(uint32_t *gate) {
    for (;;) {
        uint32_t expected = gate_closed;
        // Announce the sleep; if the gate opened meanwhile, pass.
        if (!__atomic_compare_exchange_n(gate, &expected, gate_sleeping, 0, __ATOMIC_ACQUIRE, __ATOMIC_ACQUIRE)) {
            if (expected == gate_open) goto passed;
        }
        // Sleeps only while the word is still `sleeping` (the kernel
        // compares it under its own lock: an open in between is not lost).
        syscall(SYS_futex, gate, FUTEX_WAIT_PRIVATE, gate_sleeping, NULL, NULL, 0);
        if (__atomic_load_n(gate, __ATOMIC_ACQUIRE) == gate_open) goto passed;
    }
passed:
    // Only this thread closes its gate, and nobody opens it again before
    // the thread has run and handed over (so no open is lost here).
    __atomic_store_n(gate, gate_closed, __ATOMIC_RELAXED);
}

int32_t mmulab_pick_cpu(uint32_t offset) {
    cpu_set_t set;
    if (sched_getaffinity(0, sizeof set, &set) != 0) return -1;
    int count = CPU_COUNT(&set);
    if (count <= 0) return -1;
    // Start from the processor the caller runs on now (the one the
    // kernel's load balancer chose for this process), or the first allowed.
    int here = sched_getcpu();
    int start = 0;
    for (int cpu = 0; cpu < CPU_SETSIZE && here >= 0; cpu++) {
        if (!CPU_ISSET(cpu, &set)) continue;
        if (cpu == here) break;
        start++;
    }
    if (start >= count) start = 0;
    int wanted = (int)((start + offset % (uint32_t)count) % (uint32_t)count);
    for (int cpu = 0; cpu < CPU_SETSIZE; cpu++) {
        if (!CPU_ISSET(cpu, &set)) continue;
        if (wanted-- == 0) return cpu;
    }
    return -1;
}

int32_t mmulab_pin_to_cpu(int32_t cpu) {
    cpu_set_t set;
    CPU_ZERO(&set);
    CPU_SET(cpu, &set);
    return (int32_t)pthread_setaffinity_np(pthread_self(), sizeof set, &set);
}

int32_t mmulab_gettid(void) {
    return (int32_t)syscall(SYS_gettid);
}

void mmulab_set_thread_name(const char *name) {
    char truncated[16];
    strncpy(truncated, name, sizeof truncated - 1);
    truncated[sizeof truncated - 1] = '\0';
    pthread_setname_np(pthread_self(), truncated);
}
