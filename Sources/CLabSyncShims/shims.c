#define _GNU_SOURCE
#include <pthread.h>
#include <sched.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>
#include <linux/futex.h>
#include <linux/membarrier.h>
#include <limits.h>
#include <time.h>
#include "CLabSyncShims.h"

__thread void *mmulab_thread_context = NULL;
__thread void *mmulab_thread_scheduled = NULL;
__thread const char *mmulab_thread_label = NULL;
__thread int32_t mmulab_thread_label_tid = 0;

void mmulab_set_thread_label(const char *name, int32_t tid) {
    char *old = (char *)mmulab_thread_label;
    // Readers are this thread's crash handler: publish the new label before
    // the old one goes.
    mmulab_thread_label = name ? strdup(name) : NULL;
    mmulab_thread_label_tid = name ? tid : 0;
    __atomic_signal_fence(__ATOMIC_SEQ_CST);
    free(old);
}

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

void mmulab_word_lock_contended(uint32_t *word) {
    // Mark the lock contended before sleeping, so its holder wakes someone.
    uint32_t seen = __atomic_exchange_n(word, 2, __ATOMIC_ACQUIRE);
    while (seen != 0) {
        syscall(SYS_futex, word, FUTEX_WAIT_PRIVATE, 2, NULL, NULL, 0);
        seen = __atomic_exchange_n(word, 2, __ATOMIC_ACQUIRE);
    }
}

void mmulab_word_wake(uint32_t *word) {
    syscall(SYS_futex, word, FUTEX_WAKE_PRIVATE, 1, NULL, NULL, 0);
}

void mmulab_condition_sleep(mmulab_condition *condition, uint32_t sequence, int64_t timeout_ns) {
    struct timespec timeout = { .tv_sec = timeout_ns / 1000000000, .tv_nsec = timeout_ns % 1000000000 };
    syscall(SYS_futex, &condition->sequence, FUTEX_WAIT_PRIVATE, sequence, timeout_ns >= 0 ? &timeout : NULL, NULL, 0);
}

void mmulab_condition_broadcast(mmulab_condition *condition) {
    __atomic_fetch_add(&condition->sequence, 1, __ATOMIC_RELAXED);
    if (condition->waiters > 0) syscall(SYS_futex, &condition->sequence, FUTEX_WAKE_PRIVATE, INT_MAX, NULL, NULL, 0);
}

/* ---- biased locks ---- */

static int membarrier_state = -1; /* -1: not asked; 0: unusable; 1: registered */

int mmulab_biased_lock_supported(void) {
    int state = __atomic_load_n(&membarrier_state, __ATOMIC_ACQUIRE);
    if (state >= 0) return state;
    long commands = syscall(SYS_membarrier, MEMBARRIER_CMD_QUERY, 0, 0);
    int usable = commands >= 0 && (commands & MEMBARRIER_CMD_PRIVATE_EXPEDITED)
        && syscall(SYS_membarrier, MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED, 0, 0) == 0;
    __atomic_store_n(&membarrier_state, usable ? 1 : 0, __ATOMIC_RELEASE);
    return usable;
}

void mmulab_biased_lock_carrier_contended(mmulab_biased_lock *lock) {
    // Someone announced: step back (waking whoever waits for the flag) and
    // queue for the word like them.
    __atomic_store_n(&lock->carrier_holds, 0, __ATOMIC_RELEASE);
    mmulab_word_wake(&lock->carrier_holds);
    mmulab_word_lock(&lock->word);
    lock->carrier_took_word = 1;
}

void mmulab_biased_unlock_carrier_contended(mmulab_biased_lock *lock) {
    lock->carrier_took_word = 0;
    mmulab_word_unlock(&lock->word);
}

void mmulab_biased_lock_other(mmulab_biased_lock *lock) {
    __atomic_fetch_add(&lock->others, 1, __ATOMIC_SEQ_CST);
    // Every running thread executes a full barrier: the carrier either saw
    // the announcement (and steps back) or its flag is visible to us now.
    syscall(SYS_membarrier, MEMBARRIER_CMD_PRIVATE_EXPEDITED, 0, 0);
    mmulab_word_lock(&lock->word);
    while (__atomic_load_n(&lock->carrier_holds, __ATOMIC_ACQUIRE) != 0) {
        syscall(SYS_futex, &lock->carrier_holds, FUTEX_WAIT_PRIVATE, 1, NULL, NULL, 0);
    }
}

void mmulab_biased_unlock_other(mmulab_biased_lock *lock) {
    mmulab_word_unlock(&lock->word);
    __atomic_fetch_sub(&lock->others, 1, __ATOMIC_RELEASE);
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
