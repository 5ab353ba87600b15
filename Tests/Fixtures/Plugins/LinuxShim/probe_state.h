/*
 * The Linux shim probe's state, shared by its files: probe.c (the
 * interval, locks, waits and the command switch), probe_notifiers.c
 * (whole-space notifiers and a second interval), probe_pages.c (pins,
 * page helpers, highmem helpers) and probe_runtime.c (delays, the clock,
 * printk, mm references). Kernel-style code: it sees only <linux/...>.
 */
#ifndef SHIMPROBE_STATE_H
#define SHIMPROBE_STATE_H

#include <linux/atomic.h>
#include <linux/completion.h>
#include <linux/memremap.h>
#include <linux/mm.h>
#include <linux/mmu_notifier.h>
#include <linux/mutex.h>
#include <linux/rwsem.h>
#include <linux/spinlock.h>
#include <linux/wait.h>

#include "probe.h"

#define SLOTS 8
#define KEPT 64
#define PINNED 16

struct probe_notifier {
    struct mmu_notifier notifier;
    struct probe *probe;
    atomic_t starts, ends, releases, young, tested, flushes;
    int last_event;
};

/* A second interval, inserted and removed on command (PROBE_EXTRA). */
struct probe_extra {
    struct mmu_interval_notifier notifier;
    bool inserted;
    atomic_t invalidations;
    /* Under the probe's spin lock. */
    int last_event;
    unsigned long last_start, last_end;
};

struct probe {
    struct mmu_interval_notifier notifier;
    struct mutex mutex;
    spinlock_t lock;
    struct rw_semaphore sem;
    struct completion done;
    wait_queue_head_t wq;
    bool flag;
    /* Pages from hmm_range_fault, kept past invalidations on purpose. */
    struct page *slots[SLOTS];
    /* Pages from the last pin (PROBE_PIN, PROBE_PIN_VARIANT). */
    struct page *pinned[PINNED];
    unsigned long pinned_count;
    /* What the interval heard. */
    atomic_t invalidations;
    int last_event;
    const void *last_owner;
    bool last_blockable;
    unsigned long last_start, last_end;
    /* PROBE_CHECK_RETRY's watch: mmu_interval_check_retry(watched_seq) as
     * the invalidate op saw it right after mmu_interval_set_seq. */
    bool watching;
    unsigned long watched_seq;
    int retry_in_callback; /* -1: no invalidation came since the watch */
    /* Allocations made in invalidations while armed. */
    bool alloc_armed;
    void *kept[KEPT];
    int kept_count;
    atomic_t alloc_failed;
    /* Whole-space notifiers. */
    struct probe_notifier *registered;
    struct mmu_notifier *gotten;
    atomic_t frees;
    struct probe_extra extra;
    /* PROBE_MIGRATE's device memory, and what its migrate_to_ram saw. */
    struct dev_pagemap pgmap;
    atomic_t ram_faults;
    unsigned long ram_fault_address;
    bool ram_fault_page_ok;
    /* make_device_exclusive's last folio (PROBE_EXCLUSIVE). */
    struct folio *exclusive;
};

/* A page by number: 0..SLOTS-1 the hmm_range_fault slots, PINNED_SLOT + i
 * the i-th page of the last pin; NULL if there is none. */
#define PINNED_SLOT 8
struct page *probe_page_at(struct probe *probe, u64 slot);

long probe_notifier(struct probe *probe, u64 which, struct probe_command *c);
long probe_extra(struct probe *probe, struct probe_command *c);
long probe_pin_variant(struct probe *probe, struct probe_command *c);
long probe_unpin_one(struct probe *probe, struct probe_command *c);
long probe_page(struct probe *probe, struct probe_command *c);
long probe_highmem(struct probe *probe, struct probe_command *c);
long probe_delay(struct probe *probe, struct probe_command *c);
long probe_printk(struct probe *probe, struct probe_command *c);
long probe_mm_refs(struct probe *probe, struct probe_command *c);
long probe_hmm_range(struct probe *probe, struct probe_command *c);
long probe_exclusive(struct probe *probe, struct probe_command *c);
long probe_migrate(struct probe *probe, struct probe_command *c);

#endif /* SHIMPROBE_STATE_H */
