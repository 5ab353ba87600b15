/*
 * mmulab device plugin ABI, version 1.6.
 *
 * History: 1.0 the first; 1.1 adds device-private memory (the host table's
 * device_memory_* and migrate_* services, MMULAB_PFN_DEVICE_PRIVATE); 1.2
 * adds change_pte_pfn to the subscriber table and the plugin's optional
 * control operation, and made the plugin's attach, detach and access
 * [any-thread] (the lab's attach-churn and exit-release actors call them
 * concurrently with each other and with the device workloads): no struct
 * changed, but a plugin written to the 1.0/1.1 text, which tagged them
 * only [blockable], may have assumed one caller at a time and must lock
 * its own state (hosts call them concurrently whatever minor was
 * negotiated). 1.3 changes no struct: migrate_to_host announces the
 * device memory's owner in its migrate invalidation, as Linux's
 * migrate_to_ram does, so the owning device skips it and must drop its own
 * translations of the range before it calls; to an instance that
 * negotiated 1.2 or less the host still announces no owner. 1.4 adds the
 * host's thread services (thread_create, thread_join, yield, now_ns,
 * thread_id) at the end of the host table, so a plugin's own engines run
 * on threads the host schedules and read the host's clock. (Hosts from 1.4
 * on also check every argument of every service and what a binding or
 * instance leaves behind, and validate lock order; no struct changed for
 * it, so the minor did not either: see "Host services" and the rules at
 * detach and destroy below.) 1.5 adds the events MMULAB_EVENT_MADVISE_FREE,
 * MMULAB_EVENT_HUGE_SPLIT and MMULAB_EVENT_COLLAPSE (an instance that
 * negotiated 1.4 or less gets MMULAB_EVENT_MADVISE_DONTNEED for them, the
 * CLEAR-type event it knows), the pin flag MMULAB_PIN_LONGTERM,
 * MMULAB_PFN_HUGE (huge pages reported by fault_range), device-exclusive
 * pages (the host service make_exclusive, MMULAB_PFN_EXCLUSIVE, and
 * MMULAB_ACCESS_ATOMIC, which the host passes only to an instance that
 * negotiated 1.5). 1.6 adds the host service lookup_range (the primary's
 * translations of a range as they are, faulting nothing in: Linux's
 * hmm_range_fault without HMM_PFN_REQ_FAULT) and MMULAB_PFN_NONE, the
 * entry it gives where nothing is mapped, and the plugin's optional
 * migrate_to_ram (Linux: the pagemap's migrate_to_ram), which the host calls
 * on a CPU fault of a page in the instance's device memory before it
 * brings the page home itself (never for an instance that negotiated 1.5
 * or less), and page references (the host services page_get and page_put,
 * and MMULAB_PFN_REFERENCED: Linux's get_page and put_page). (Later 1.6
 * hosts, no struct changed: MMULAB_PFN_REFERENCED no longer excuses a DMA
 * inside the instance's own acknowledged invalidation, and a set_dirty of
 * a frame freed since its translation is recorded as a use after free.)
 * Every addition is at the end of its struct: the host
 * reads only what struct_size covers, and a plugin reads a host field only
 * if the host table's struct_size covers it.
 *
 * This header is the whole contract between the mmulab host and a device
 * plugin (a secondary MMU: a GPU, an RDMA NIC, KVM, an accelerator). A
 * plugin is a shared object that exports one symbol, MMULAB_DEVICE_PLUGIN_ENTRY
 * below; the host dlopen()s it with RTLD_NOW | RTLD_LOCAL, calls the entry,
 * and talks to the plugin only through the tables declared here. Nothing
 * throws across this boundary and no language runtime's types cross it.
 *
 * Versioning. The major version is part of the entry symbol's name: a host
 * for major 1 looks only for mmulab_device_plugin_v1. The minor version is
 * negotiated: the host passes the highest minor it supports, the plugin
 * answers with the minor it will use (at most the host's). Every table
 * starts with its size in bytes; a field is read only if the size covers
 * it, so tables can grow at the end without breaking older peers. Optional
 * function pointers may be NULL.
 *
 * Contexts. Every callback says where it may be called from, in brackets:
 *   [blockable]      the caller can wait: the callee may sleep (take a
 *                    sleeping lock, wait for in-flight DMA to drain).
 *   [non-blockable]  the caller cannot wait (the OOM reaper, a shrinker in
 *                    fast-fail mode, code under a spin lock): the callee must
 *                    not sleep. Where the callback can fail, it answers
 *                    MMULAB_RETRY instead of sleeping. The host records any
 *                    sleep here as a context violation.
 *   [range-dependent] blockable if the range's MMULAB_RANGE_BLOCKABLE flag
 *                    is set, non-blockable otherwise.
 *   [reclaim]        called from page reclaim: memory for the callee's own
 *                    bookkeeping comes only from a bounded reserve
 *                    (host->alloc_page_table_page may return an error that
 *                    must be handled, not treated as fatal).
 *   [any-thread]     any thread; the callee synchronises itself.
 * Every lock, wait, sleep, thread, spin-wait and clock read a plugin does
 * must go through the host (host->lock_*, host->completion_*,
 * host->sleep_ns, and from 1.4 host->thread_create / thread_join / yield /
 * now_ns / thread_id): that is how the host sees context violations, and
 * how `mmulab run --schedule` runs every thread one at a time from a seed
 * on a virtual clock, so a failure replays exactly. In that deterministic
 * mode a plugin that makes its own threads (pthread_create), spins without
 * host->yield, or reads the wall clock makes the run irreproducible; a call
 * into the host from a thread the host did not make is reported, naming
 * the plugin.
 *
 * The rules behind the callbacks come from the Linux MMU notifier design
 * (docs/CONTRACT.md has each rule with its source): stop using a range at
 * invalidate_range_start and create no new translations until the matching
 * end; the end comes only after a successful start; report pages the
 * device wrote as dirty before letting go of them; never sleep where the
 * caller cannot.
 */
#ifndef MMULAB_DEVICE_PLUGIN_H
#define MMULAB_DEVICE_PLUGIN_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#ifdef __cplusplus
extern "C" {
#endif

#define MMULAB_ABI_MAJOR 1
#define MMULAB_ABI_MINOR 6

/* The one symbol a plugin exports. */
#define MMULAB_DEVICE_PLUGIN_ENTRY mmulab_device_plugin_v1
#define MMULAB_DEVICE_PLUGIN_ENTRY_NAME "mmulab_device_plugin_v1"

/* ---------------------------------------------------------------------- */
/* Status codes and errors                                                 */
/* ---------------------------------------------------------------------- */

typedef int32_t mmulab_status;

enum {
    MMULAB_OK = 0,
    /* Only from a non-blockable callback: doing the work would sleep. */
    MMULAB_RETRY = 1,
    MMULAB_ERR_INVALID = -1,       /* an argument is wrong */
    MMULAB_ERR_NO_MEMORY = -2,     /* an allocation failed */
    MMULAB_ERR_FAULT = -3,         /* the address is not mapped or not accessible */
    MMULAB_ERR_NOT_SUPPORTED = -4, /* optional operation not provided */
    MMULAB_ERR_BUSY = -5,          /* try again later */
    MMULAB_ERR_KILLED = -6,        /* the address space was OOM-killed or exited */
    MMULAB_ERR_INTERNAL = -7,      /* the callee is broken */
};

/* A status plus a message. Callees that fail fill `message` (NUL-terminated,
 * truncated to fit) when `error` is not NULL. */
typedef struct mmulab_error {
    mmulab_status status;
    char message[256];
} mmulab_error;

/* [any-thread] Fills `error` (when not NULL) with `status` and a
 * printf-style message, truncated to fit, and returns `status`, so a
 * callee fails in one line: `return mmulab_fail(error, MMULAB_ERR_INVALID,
 * "bad option '%s'", key);`. Never sleeps. */
#if defined(__GNUC__) || defined(__clang__)
__attribute__((format(printf, 3, 4)))
#endif
static inline mmulab_status mmulab_fail(mmulab_error *error, mmulab_status status, const char *format, ...) {
    if (error) {
        va_list arguments;
        va_start(arguments, format);
        error->status = status;
        vsnprintf(error->message, sizeof error->message, format, arguments);
        va_end(arguments);
    }
    return status;
}

/* ---------------------------------------------------------------------- */
/* Ranges, events, translations                                            */
/* ---------------------------------------------------------------------- */

/* Why a range is invalidated (mmulab's NotifierEvent; see the README for the
 * mapping to Linux's enum mmu_notifier_event). */
enum mmulab_event {
    MMULAB_EVENT_MUNMAP = 0,
    MMULAB_EVENT_MREMAP = 1,
    MMULAB_EVENT_MADVISE_DONTNEED = 2,
    MMULAB_EVENT_MPROTECT = 3,
    MMULAB_EVENT_WRITE_PROTECT = 4,
    MMULAB_EVENT_SOFT_DIRTY = 5,
    MMULAB_EVENT_VMSCAN = 6,
    MMULAB_EVENT_MIGRATE = 7,
    MMULAB_EVENT_KSM = 8,
    MMULAB_EVENT_COW_BREAK = 9,
    MMULAB_EVENT_EXCLUSIVE = 10,
    MMULAB_EVENT_EXIT = 11,
    MMULAB_EVENT_OOM_REAP = 12,
    /* 1.5: madvise(MADV_FREE): the pages stay mapped but become clean, and
     * reclaim may discard them until someone writes them again. A device
     * that writes such a page afterwards must report it dirty
     * (host->set_dirty) or its write may be discarded with the page. */
    MMULAB_EVENT_MADVISE_FREE = 13,
    /* 1.5: a transparent huge page is split: always the whole aligned
     * 2 MiB, before the operation that needed the split (a partial munmap,
     * mprotect or madvise, copy-on-write, swap-out) sends its own event
     * for its own range. The frames stay where they are. */
    MMULAB_EVENT_HUGE_SPLIT = 14,
    /* 1.5: 512 small pages are replaced by one huge page (khugepaged,
     * MADV_COLLAPSE), over the aligned 2 MiB: the old frames are freed. */
    MMULAB_EVENT_COLLAPSE = 15,
};

enum {
    MMULAB_RANGE_BLOCKABLE = 1u << 0, /* the callee may sleep */
    MMULAB_RANGE_HAS_OWNER = 1u << 1, /* `owner` is meaningful (migrate) */
};

/* One invalidation: [start, end) of one address space. */
typedef struct mmulab_range {
    uint64_t address_space;
    uint64_t start;
    uint64_t end;
    uint32_t event; /* enum mmulab_event */
    uint32_t flags; /* MMULAB_RANGE_* */
    uint64_t owner; /* who started a migration, if MMULAB_RANGE_HAS_OWNER */
} mmulab_range;

/* [any-thread] The part of `range` inside the window [start, start + length)
 * (a binding's, say), in *first and *end (end exclusive); false, with
 * neither written, when they do not overlap. An invalidation's range may
 * be wider than the window the callee mirrors (a whole-space subscriber
 * sees every range of the address space; an interval sees any range that
 * overlaps it), so every callback that walks its own page table clamps
 * first. Never sleeps. */
static inline bool mmulab_range_clamp(const mmulab_range *range, uint64_t start, uint64_t length, uint64_t *first, uint64_t *end) {
    uint64_t window_end = start + length;
    uint64_t lo = range->start > start ? range->start : start;
    uint64_t hi = range->end < window_end ? range->end : window_end;
    if (lo >= hi) return false;
    *first = lo;
    *end = hi;
    return true;
}

enum {
    MMULAB_PFN_WRITABLE = 1u << 0,
    MMULAB_PFN_PINNED = 1u << 1,
    /* 1.1: the page lives in the caller's own device memory; `pfn` names
     * the device page (Linux: hmm_range_fault with dev_private_owner). */
    MMULAB_PFN_DEVICE_PRIVATE = 1u << 2,
    /* 1.5: taken with make_exclusive: good only while the primary still
     * holds the page exclusive for this instance; once the CPU takes it
     * back (an MMULAB_EVENT_EXCLUSIVE invalidation without an owner), it
     * is stale like any dropped translation. */
    MMULAB_PFN_EXCLUSIVE = 1u << 3,
    /* 1.5: the page is part of a transparent huge page's PMD mapping: its
     * aligned 2 MiB is one folio, mapped with one permission, so the device
     * may map it with one 2 MiB entry (fault the whole 2 MiB to get all 512
     * pfns). Any change to any part of it first comes as an invalidation of
     * the whole 2 MiB (MMULAB_EVENT_HUGE_SPLIT, a migration, a collapse):
     * zap the whole entry then; a later invalidation of one 4 KiB page of a
     * split huge page covers only that page. */
    MMULAB_PFN_HUGE = 1u << 4,
    /* 1.6, lookup_range only: nothing a device could use is mapped at the
     * address (not present, swapped out, PROT_NONE, a device-exclusive
     * entry, another device's page); pfn and generation are 0. Not a
     * translation: never pass it to another service (refused). */
    MMULAB_PFN_NONE = 1u << 5,
    /* 1.6: set by the plugin on a translation it holds a page_get reference
     * on: a DMA through it reaches the frame even once the primary no
     * longer maps it there (a kernel driver's access to a page it holds a
     * reference on), until page_put. Checked against what the instance
     * holds: set on any other it is refused (reported) and ignored. The
     * reference keeps the frame, not the mapping: once the instance's own
     * callback for an invalidation of the page returned, until that range
     * ends, a DMA through a translation the primary no longer has is stale,
     * flag or not. */
    MMULAB_PFN_REFERENCED = 1u << 6,
};

/* A translation from the primary MMU: the frame behind one page, and the
 * frame's generation (it changes when the frame is freed, so using a freed
 * and reused frame is caught). Pass it back unchanged to DMA and dirty calls. */
typedef struct mmulab_pfn {
    uint64_t address;
    uint64_t pfn;
    uint32_t generation;
    uint32_t flags; /* MMULAB_PFN_* */
} mmulab_pfn;

/* ---------------------------------------------------------------------- */
/* Notifier callback tables (implemented by the plugin)                    */
/* ---------------------------------------------------------------------- */

enum {
    MMULAB_CAP_CHANGE_PTE = 1u << 0,    /* handles change_pte; may skip ksm start/end */
    MMULAB_CAP_YOUNG = 1u << 1,         /* tracks accessed bits: clear_young/test_young */
    MMULAB_CAP_SECONDARY_TLB = 1u << 2, /* caches primary tables: invalidate_secondary_tlbs */
    MMULAB_CAP_FAILS_NONBLOCKING = 1u << 3, /* may answer MMULAB_RETRY to non-blockable starts */
};

/* A whole-address-space subscription (Linux: struct mmu_notifier_ops). */
typedef struct mmulab_subscriber_ops {
    uint32_t struct_size;
    uint32_t capabilities; /* MMULAB_CAP_* */
    /* [range-dependent] Stop using translations in the range and create no
     * new ones until the matching end. Answer MMULAB_OK, or MMULAB_RETRY only
     * when the range is not blockable. Required. */
    mmulab_status (*invalidate_range_start)(void *data, const mmulab_range *range);
    /* [range-dependent] The matching end; only after a start that answered OK. Required. */
    void (*invalidate_range_end)(void *data, const mmulab_range *range);
    /* [non-blockable] Called where the primary flushes its TLB after the PTEs
     * changed (Linux: arch_invalidate_secondary_tlbs): for a single flush,
     * under the primary's page-table lock right after the change; during a
     * zap, once per mmu_gather flush (before that batch's pages are freed),
     * without it; for reclaim's deferred flush, over the whole address space.
     * Do not take a lock here that you hold across DMA calls to the host
     * (those take the page-table lock). Optional. */
    void (*invalidate_secondary_tlbs)(void *data, const mmulab_range *range);
    /* [non-blockable][reclaim] Test and clear the device's accessed bits in
     * [start, end); return nonzero if any was set. Reclaim calls this as
     * Linux's clear_flush_young: a device that caches translations (a TLB)
     * must also flush the entries it found young, so that its next access
     * to the page sets the bit again. A plugin that declares MMULAB_CAP_YOUNG
     * is held to it: if its device used a page after the previous
     * clear_young of that page returned and before this one began, the
     * answer must be nonzero. Optional. */
    int (*clear_young)(void *data, uint64_t address_space, uint64_t start, uint64_t end);
    /* [non-blockable] Whether the device used `address` recently. Optional. */
    int (*test_young)(void *data, uint64_t address_space, uint64_t address);
    /* [non-blockable] The primary PTE at `address` now maps `pfn` (KSM merge),
     * under the page-table lock, inside a ksm invalidation. Optional. */
    void (*change_pte)(void *data, uint64_t address_space, uint64_t address, uint64_t pfn, int writable);
    /* [blockable] The address space is going away: drop everything. It runs
     * while the subscription is still listed (Linux's mn_hlist_release): an
     * invalidation may still start, before or after it, and must be
     * answered. Once every release of the address space has returned, the
     * subscription is unhooked: no callback starts after that. Optional. */
    void (*release)(void *data, uint64_t address_space);
    /* 1.2 [non-blockable] change_pte with the whole translation: `pfn` carries
     * the new frame's generation, so the device can keep using the entry it
     * repoints (DMA through a pfn needs its generation). When set, the host
     * calls it instead of change_pte; MMULAB_CAP_CHANGE_PTE covers both.
     * Called under the page-table lock: do not wait here for anything that
     * DMAs through the host (DMA takes that lock). Optional. */
    void (*change_pte_pfn)(void *data, uint64_t address_space, const mmulab_pfn *pfn);
} mmulab_subscriber_ops;

typedef struct mmulab_interval mmulab_interval;

/* An interval subscription (Linux: struct mmu_interval_notifier_ops). */
typedef struct mmulab_interval_ops {
    uint32_t struct_size;
    /* [range-dependent] An invalidation overlaps the interval. Take the lock
     * your fault path holds around read_retry, call host->interval_set_seq(
     * interval, current_seq), stop using the overlap, return true. For a
     * non-blockable range return false instead of sleeping. Required. */
    bool (*invalidate)(void *data, mmulab_interval *interval, const mmulab_range *range, uint64_t current_seq);
} mmulab_interval_ops;

/* A device cache the host may shrink under memory pressure (Linux: struct shrinker). */
typedef struct mmulab_shrinker_ops {
    uint32_t struct_size;
    /* [non-blockable][reclaim] How many objects could be freed now. Required. */
    uint64_t (*count)(void *data);
    /* [range-dependent by can_block][reclaim] Free up to `count` objects and
     * return how many were freed, or UINT64_MAX (MMULAB_SHRINK_STOP) when no
     * progress is possible now (device lock contended in fast-fail mode). */
    uint64_t (*scan)(void *data, uint64_t count, bool can_block);
} mmulab_shrinker_ops;

#define MMULAB_SHRINK_STOP UINT64_MAX

/* ---------------------------------------------------------------------- */
/* Host services (implemented by the host, handed to create)               */
/* ---------------------------------------------------------------------- */

/* Every service checks what it is given. A bad argument (a NULL pointer or
 * handle, a translation the host never handed out, a destroyed lock or
 * completion, a double unpin or free, interval_set_seq outside the
 * interval's own invalidate callback, a range that is not page aligned or
 * wraps, an address space that never existed) is refused: a service that
 * returns a status answers MMULAB_ERR_INVALID, one that returns nothing
 * does nothing (trylock and completion_wait answer false, read_retry
 * answers true, read_begin 0), and the host records a contract violation
 * naming the plugin, the service and what was wrong. An address space that
 * has exited is MMULAB_ERR_KILLED, not a misuse. The host never crashes on
 * what a plugin passes, but it cannot check a non-NULL pointer to memory
 * that is not what it claims (a buffer too short, a handle that is not
 * one): a crash there is reported like a crash in the plugin (see below).
 *
 * Locks: take and release each on one thread, never take one the thread
 * holds (refused, reported: it would deadlock), and release every lock a
 * callback or operation took before it returns. The host records the
 * order in which every thread takes the plugin's locks and its own (the
 * page-table lock, the mmap lock, the rmap locks, the notifier lock, and
 * "reclaim": an allocation that may reclaim takes it, a [reclaim] callback
 * runs under it) and reports a cycle as a possible lock inversion before
 * it deadlocks (Linux's lockdep).
 *
 * A crash (SIGSEGV, SIGBUS, SIGILL, SIGFPE, abort) inside a callback, a
 * plugin operation or a host service a plugin called ends an `mmulab run`
 * with an oops naming the plugin, the callback, the range or binding, the
 * faulting address and the replay command, and exit status 4. */

typedef struct mmulab_lock mmulab_lock;
typedef struct mmulab_completion mmulab_completion;
typedef struct mmulab_subscription mmulab_subscription;
typedef struct mmulab_shrinker mmulab_shrinker;
typedef struct mmulab_device_memory mmulab_device_memory;
typedef struct mmulab_thread mmulab_thread;

enum mmulab_log_level {
    MMULAB_LOG_DEBUG = 0,
    MMULAB_LOG_INFO = 1,
    MMULAB_LOG_WARNING = 2,
    MMULAB_LOG_ERROR = 3,
    /* The plugin caught itself breaking the contract: the host reports it
     * with the run's violations. */
    MMULAB_LOG_MISBEHAVING = 4,
};

enum mmulab_lock_kind {
    MMULAB_LOCK_SLEEPING = 0, /* waiters sleep: a mutex; [blockable] only */
    MMULAB_LOCK_SPIN = 1,     /* never sleeps; holding it makes the thread non-blockable */
};

enum {
    MMULAB_FAULT_WRITE = 1u << 0, /* fault for write access */
    /* 1.5, pin only: a long-term pin (Linux: FOLL_LONGTERM, what an RDMA
     * registration without ODP needs). A page in movable memory is moved
     * out of it first, with a migrate invalidation every other device
     * must follow, and the pfns returned are those of the pinned frames:
     * translations taken before the call may be stale. */
    MMULAB_PIN_LONGTERM = 1u << 1,
};

typedef struct mmulab_host {
    uint32_t struct_size;
    uint16_t abi_major;
    uint16_t abi_minor;
    void *context; /* pass to every host function that takes `ctx` */

    /* [any-thread] */
    void (*log)(void *ctx, int level, const char *message);

    /* Synchronisation. lock/wait/sleep are [blockable] unless noted;
     * trylock, unlock, complete are [any-thread], never sleep. */
    mmulab_lock *(*lock_create)(void *ctx, const char *name, int kind);
    void (*lock_destroy)(mmulab_lock *lock);
    void (*lock)(mmulab_lock *lock); /* a spin lock may be taken anywhere */
    bool (*trylock)(mmulab_lock *lock);
    void (*unlock)(mmulab_lock *lock);
    mmulab_completion *(*completion_create)(void *ctx, const char *name);
    void (*completion_destroy)(mmulab_completion *completion);
    void (*completion_complete)(mmulab_completion *completion);
    void (*completion_complete_all)(mmulab_completion *completion);
    void (*completion_reinit)(mmulab_completion *completion);
    /* Returns false if `timeout_ns` passed first (0: wait for ever). */
    bool (*completion_wait)(mmulab_completion *completion, uint64_t timeout_ns);
    void (*sleep_ns)(void *ctx, uint64_t nanoseconds);
    /* [any-thread] Whether the calling thread is in a non-blockable section. */
    bool (*in_non_blockable)(void *ctx);
    /* [any-thread] Whether the calling thread is in reclaim. */
    bool (*in_reclaim)(void *ctx);

    /* Notifier registration, [blockable]: registration waits until no
     * invalidation that began before it is still running. */
    mmulab_status (*subscribe)(void *ctx, uint64_t address_space, const mmulab_subscriber_ops *ops, void *data,
                               mmulab_subscription **out, mmulab_error *error);
    void (*unsubscribe)(void *ctx, mmulab_subscription *subscription);
    mmulab_status (*interval_insert)(void *ctx, uint64_t address_space, uint64_t start, uint64_t length,
                                     const mmulab_interval_ops *ops, void *data, mmulab_interval **out,
                                     mmulab_error *error);
    void (*interval_remove)(void *ctx, mmulab_interval *interval);
    /* [blockable] Sleeps while an invalidation of the interval is in progress. */
    uint64_t (*interval_read_begin)(mmulab_interval *interval);
    /* [any-thread] Call under the lock your invalidate callback takes. */
    bool (*interval_read_retry)(mmulab_interval *interval, uint64_t seq);
    /* [any-thread] Only from the interval's invalidate callback. */
    void (*interval_set_seq)(mmulab_interval *interval, uint64_t seq);

    /* Primary memory, [blockable]: these fault pages in and may reclaim. */
    /* Fills `pfns` (length / 4096 entries) with the translations of
     * [start, start + length). Like hmm_range_fault: no reference is kept;
     * check read_retry before installing. */
    mmulab_status (*fault_range)(void *ctx, uint64_t address_space, uint64_t start, uint64_t length, uint32_t flags,
                                 mmulab_pfn *pfns, mmulab_error *error);
    /* Like pin_user_pages: the frames stay until unpin. */
    mmulab_status (*pin)(void *ctx, uint64_t address_space, uint64_t start, uint64_t length, uint32_t flags,
                         mmulab_pfn *pfns, mmulab_error *error);
    /* [any-thread] `dirty`: the device wrote the pages. */
    void (*unpin)(void *ctx, const mmulab_pfn *pfns, uint64_t count, bool dirty);
    /* [any-thread] The device wrote the page: it must reach the backing store.
     * Report it before the invalidation callback that drops the translation
     * lets anyone else proceed: under the lock a concurrent invalidation of
     * the same page takes. A report made after that lock is dropped can
     * arrive after another invalidation (a migration) has already copied
     * the page it believed clean, and the write is lost with the old frame.
     * A page mapped writable may be clean (a swapped-in page): a device write
     * through it is recorded nowhere but here. A pfn whose frame was freed
     * since it was translated (its generation moved on: the report came
     * after the device's own callback returned) marks nothing and is
     * recorded as a use after free. */
    void (*set_dirty)(void *ctx, const mmulab_pfn *pfn);
    /* [any-thread] The device used the page (a freed frame: nothing). */
    void (*mark_accessed)(void *ctx, const mmulab_pfn *pfn);
    /* [any-thread] Device DMA through a translation, checked against the
     * primary (a stale translation or a freed frame is recorded). Copies up
     * to the payload size. */
    void (*dma_read)(void *ctx, uint64_t address_space, const mmulab_pfn *pfn, void *buffer, uint32_t length);
    void (*dma_write)(void *ctx, uint64_t address_space, const mmulab_pfn *pfn, const void *buffer, uint32_t length);
    /* [any-thread][reclaim] A page for the device's own page tables, charged
     * to physical memory. In reclaim context only a bounded reserve: handle
     * MMULAB_ERR_NO_MEMORY. */
    mmulab_status (*alloc_page_table_page)(void *ctx, uint64_t *pfn_out);
    void (*free_page_table_page)(void *ctx, uint64_t pfn);

    /* Shrinkers, [blockable]. */
    mmulab_status (*shrinker_register)(void *ctx, const char *name, const mmulab_shrinker_ops *ops, void *data,
                                       mmulab_shrinker **out);
    void (*shrinker_unregister)(void *ctx, mmulab_shrinker *shrinker);

    /* Device-private memory, ABI 1.1 (a host that offers only 1.0 has a
     * shorter table: check struct_size, or the negotiated minor).
     *
     * [blockable] Make `pages` pages of device memory (simulated VRAM the CPU
     * cannot reach) for this instance. Migrations into it announce `owner`
     * in their migrate invalidation (MMULAB_RANGE_HAS_OWNER), so the device
     * can skip the invalidations it caused itself; fault_range returns its
     * pages as MMULAB_PFN_DEVICE_PRIVATE translations, checked on DMA like
     * any other. One owner per instance. The memory lives until the instance
     * is destroyed; the host brings any page still in it home then. */
    mmulab_status (*device_memory_create)(void *ctx, const char *name, uint64_t pages, uint64_t owner,
                                          mmulab_device_memory **out, mmulab_error *error);
    /* [any-thread] Pages of the device memory in use. */
    uint64_t (*device_memory_used)(mmulab_device_memory *memory);
    /* [blockable] Move the pages of [start, start + length) to the device
     * memory (Linux: migrate_vma_setup/pages/finalize). Only present,
     * exclusive, unpinned private anonymous pages move, as many as fit;
     * `*moved` says how many. The device must already have dropped its own
     * translations of the range: the invalidation carries its owner. */
    mmulab_status (*migrate_to_device)(void *ctx, mmulab_device_memory *memory, uint64_t address_space, uint64_t start,
                                       uint64_t length, uint64_t *moved, mmulab_error *error);
    /* [blockable] Bring the range's pages in `memory` home to system memory.
     * From 1.3 the invalidation carries the memory's owner (Linux:
     * migrate_to_ram migrates with the device's pgmap owner): the calling
     * device must already have dropped its own translations of the range,
     * every other device lets go through the invalidation. (1.2 and older:
     * no owner; every device, the caller included, is told.) A CPU access
     * to a device page calls the plugin's migrate_to_ram first (1.6);
     * without one, or for what it left in device memory, the host brings
     * the page home by itself, with no owner, so the owner learns of it
     * through the invalidation like everyone else. */
    mmulab_status (*migrate_to_host)(void *ctx, mmulab_device_memory *memory, uint64_t address_space, uint64_t start,
                                     uint64_t length, uint64_t *moved, mmulab_error *error);
    /* [blockable] Device memory pressure: bring up to `pages` of the pages
     * allocated longest ago home, wherever they are mapped now (Linux:
     * migrate_device_range). Returns how many moved. */
    uint64_t (*device_memory_evict)(void *ctx, mmulab_device_memory *memory, uint64_t pages);

    /* Thread services, ABI 1.4 (a host that offers only 1.3 has a shorter
     * table: check struct_size, or the negotiated minor). A plugin that runs
     * work on threads of its own (DMA engines, fault handlers, garbage
     * collectors) makes them here: the host schedules them with its own
     * actors, deterministically when asked, and names them in reports.
     * In deterministic mode (x86-64) the host's threads take turns on one
     * kernel thread: each keeps its own stack and thread-local storage, but
     * gettid, the CPU it runs on and its affinity are that kernel thread's
     * (name a thread with thread_id; `mmulab run --kernel-hand-over` gives
     * each thread a kernel thread of its own, with the same schedule).
     *
     * [blockable] Start a thread named `name` (for reports; copied) that
     * runs entry(argument). The thread may call every host function a
     * plugin thread may. On MMULAB_OK `*out` is its handle: join it exactly
     * once, before destroy returns. */
    mmulab_status (*thread_create)(void *ctx, const char *name, void (*entry)(void *argument), void *argument,
                                   mmulab_thread **out, mmulab_error *error);
    /* [blockable] Wait until the thread's entry has returned, then free the handle. */
    void (*thread_join)(void *ctx, mmulab_thread *thread);
    /* [any-thread] Let another thread run; never sleeps (sched_yield). Call
     * it in every loop that waits for another thread by polling memory: in
     * deterministic mode the thread you wait for runs only when you yield
     * (or block). */
    void (*yield)(void *ctx);
    /* [any-thread] Monotonic nanoseconds since an arbitrary origin: the
     * host's clock, virtual in deterministic mode (it advances with the
     * run's steps, and jumps when every thread waits). */
    uint64_t (*now_ns)(void *ctx);
    /* [any-thread] A number naming the calling thread, never 0, distinct
     * among live threads (the host's, not pthread_self: stable across
     * replays in deterministic mode). */
    uint64_t (*thread_id)(void *ctx);

    /* Device-exclusive pages, ABI 1.5 (check struct_size or the negotiated
     * minor).
     *
     * [blockable] Take the page at `address` exclusive for this instance,
     * for atomics the CPU must not interleave with (Linux:
     * make_device_exclusive). The page is faulted in writable first; then
     * its PTE becomes a device-exclusive entry under an
     * MMULAB_EVENT_EXCLUSIVE invalidation carrying `owner`
     * (MMULAB_RANGE_HAS_OWNER; 0: none), which you skip, as every other
     * device drops its translation. `*pfn` gets the translation
     * (MMULAB_PFN_WRITABLE | MMULAB_PFN_EXCLUSIVE). Install it as after
     * fault_range: under the lock your invalidation takes, only if no
     * invalidation of the page raced (interval_read_retry). Any CPU access
     * to the page, another device's fault on it, fork, reclaim or migration
     * gives it back with an invalidation without your owner (exclusive,
     * or the operation's own event): drop the entry then, like any other. */
    mmulab_status (*make_exclusive)(void *ctx, uint64_t address_space, uint64_t address, uint64_t owner, mmulab_pfn *pfn,
                                    mmulab_error *error);

    /* Lookup without faulting, ABI 1.6 (check struct_size or the negotiated
     * minor).
     *
     * [blockable] Fills `pfns` (length / 4096 entries) with the translations
     * of [start, start + length) as the primary maps them now (Linux:
     * hmm_range_fault with no HMM_PFN_REQ_FAULT): faults nothing in, brings
     * no device page home, marks nothing accessed. Where nothing the device
     * could use is mapped the entry is MMULAB_PFN_NONE. Pages in the
     * caller's own device memory come as MMULAB_PFN_DEVICE_PRIVATE, huge
     * pages with MMULAB_PFN_HUGE, as from fault_range. Like fault_range, no
     * reference is kept: check read_retry before installing. Takes the
     * primary's mmap lock shared, so it may sleep. MMULAB_ERR_KILLED once
     * the address space has exited. */
    mmulab_status (*lookup_range)(void *ctx, uint64_t address_space, uint64_t start, uint64_t length, mmulab_pfn *pfns,
                                  mmulab_error *error);

    /* Page references, ABI 1.6 (Linux: get_page / put_page, folio_get /
     * folio_put).
     *
     * [any-thread] Take a reference on the frame behind `pfn`, a current
     * translation (from fault_range, lookup_range or pin, under your
     * notifier lock after read_retry): the frame is neither freed nor
     * reused until page_put, though the primary may unmap it meanwhile
     * (reclaim and migration leave a page they find referenced where it
     * is, as Linux's do). Set MMULAB_PFN_REFERENCED on the pfn you DMA
     * through while you hold it. Never sleeps and takes no lock of the
     * primary's, so it may be called anywhere. MMULAB_ERR_FAULT (reported)
     * if the frame was freed since the translation was taken (a use after
     * free); MMULAB_ERR_INVALID for a device-private page. The zero page
     * takes no reference (it is never freed). What is held at destroy is
     * reported and put by the host. */
    mmulab_status (*page_get)(void *ctx, const mmulab_pfn *pfn);
    /* [any-thread] Put a reference page_get took (the last one may free
     * the frame). One this instance does not hold is refused (reported). */
    void (*page_put)(void *ctx, const mmulab_pfn *pfn);
} mmulab_host;

/* ---------------------------------------------------------------------- */
/* The plugin (implemented by the plugin)                                  */
/* ---------------------------------------------------------------------- */

/* What a binding maps: a window of the device's address space onto a range
 * of one address space (a GPU SVM range, an RDMA memory region, a KVM memslot). */
typedef struct mmulab_binding_desc {
    uint32_t struct_size;
    uint32_t flags; /* MMULAB_BINDING_* */
    uint64_t address_space;
    uint64_t start;          /* page aligned */
    uint64_t length;         /* page aligned */
    uint64_t device_address; /* where the window starts in device address space */
} mmulab_binding_desc;

enum {
    MMULAB_BINDING_WRITE = 1u << 0,  /* the device may write */
    MMULAB_BINDING_PINNED = 1u << 1, /* pin instead of on-demand paging (RDMA without ODP) */
};

enum {
    MMULAB_ACCESS_WRITE = 1u << 0,
    /* 1.5: an atomic read-modify-write (with MMULAB_ACCESS_WRITE): a device
     * that does atomics on system memory takes the page exclusive first
     * (host->make_exclusive), as GPUs do for atomics the CPU must not see
     * half done. A device that cannot may treat it as a write. */
    MMULAB_ACCESS_ATOMIC = 1u << 1,
};

typedef struct mmulab_device_plugin {
    uint32_t struct_size;
    uint16_t abi_major; /* MMULAB_ABI_MAJOR */
    uint16_t abi_minor; /* the plugin's own minor; the negotiated one is returned by the entry */
    const char *name;
    const char *version;
    const char *description;
    uint32_t capabilities; /* MMULAB_CAP_* its subscriptions declare */
    uint32_t reserved;

    /* [blockable] Make an instance. `host` stays valid until destroy.
     * `options` is a NUL-terminated string (may be empty). Required. */
    mmulab_status (*create)(const mmulab_host *host, const char *options, void **instance, mmulab_error *error);
    /* [blockable] Tear an instance down; every binding is detached first.
     * When it returns the instance holds nothing of the host's: no
     * subscription, interval, shrinker, pin or page-table page, and no page
     * in its device memory (bring them home with device_memory_evict, as a
     * driver's teardown evicts its chunks). What is left is reported and
     * undone by the host. Required. */
    void (*destroy)(void *instance);
    /* [blockable] [any-thread] Map a window. Typically subscribes an interval over the range.
     * May run concurrently with access, detach and other attaches on the same instance (the
     * lab's attach-churn and exit-release actors do). Required. */
    mmulab_status (*attach)(void *instance, const mmulab_binding_desc *desc, void **binding, mmulab_error *error);
    /* [blockable] [any-thread] Unmap a window; no callback for it may run after this returns.
     * May run concurrently with access and attach on other bindings. Also called for a binding
     * whose address space has exited (after release): it must then only free what is left.
     * The intervals and pins made over the binding's range (by any call) must be gone when it
     * returns; what is left is reported and removed by the host, which answers the interval's
     * callbacks in the plugin's stead until then. Required. */
    void (*detach)(void *instance, void *binding);
    /* [blockable] [any-thread] The device reads or writes `length` bytes at the start of
     * the page at `device_address` through its own page table, faulting the
     * translation in if needed (the lab's device workloads call this). Required. */
    mmulab_status (*access)(void *instance, void *binding, uint64_t device_address, uint32_t flags, void *buffer,
                            uint32_t length, mmulab_error *error);

    /* Optional (may be NULL). */
    /* [blockable] Fault a range into the device ahead of use (ibv_advise_mr). */
    mmulab_status (*prefetch)(void *instance, void *binding, uint64_t device_address, uint64_t length,
                              mmulab_error *error);
    /* [blockable] Move a range to device memory and back (device-private memory). */
    mmulab_status (*migrate)(void *instance, void *binding, uint64_t device_address, uint64_t length, bool to_device,
                             mmulab_error *error);
    /* [any-thread] Named counters: how many, and the i-th (name valid until destroy). */
    uint32_t (*stat_count)(void *instance);
    mmulab_status (*stat_get)(void *instance, uint32_t index, const char **name, uint64_t *value);
    /* 1.2 [blockable] A device-specific command on a binding (an ioctl):
     * `command` and the layout of `argument` (`size` bytes, read and
     * written in place) are the plugin's to define and document (the KVM
     * plugin's dirty log: Plugins/KVM/README.md). Answer
     * MMULAB_ERR_NOT_SUPPORTED for a command you do not know. Optional. */
    mmulab_status (*control)(void *instance, void *binding, uint32_t command, void *argument, uint64_t size,
                             mmulab_error *error);
    /* 1.6 [blockable] A CPU access (or another device's fault) reached the
     * page at `address` of `address_space`, which is in this instance's
     * device memory (Linux: the pagemap's migrate_to_ram, from do_swap_page).
     * Called on the faulting thread with the primary's mmap lock held for
     * reading: the host services that take it (fault_range, pin,
     * lookup_range, make_exclusive, migrate_to_host, migrate_to_device,
     * device_memory_evict) do not take it again on this thread. Bring the page (at least it) home with migrate_to_host, whose
     * invalidation carries your owner, having dropped your own translations
     * first, and answer MMULAB_OK. Whatever is still in device memory when
     * this returns (an error, or nothing moved) the host brings home
     * itself, with an invalidation that carries no owner. Not called while
     * the instance is being created or destroyed. Optional. */
    mmulab_status (*migrate_to_ram)(void *instance, uint64_t address_space, uint64_t address, mmulab_error *error);
} mmulab_device_plugin;

/* The entry point. `host_minor`: the highest minor the host supports.
 * `negotiated_minor`: set by the plugin to the minor it will use (at most
 * `host_minor`). Returns the plugin's descriptor, valid for the process's
 * lifetime, or NULL if the plugin cannot work with this host. */
typedef const mmulab_device_plugin *(*mmulab_device_plugin_entry)(uint16_t host_minor, uint16_t *negotiated_minor);

#ifdef __cplusplus
}
#endif

#endif /* MMULAB_DEVICE_PLUGIN_H */
