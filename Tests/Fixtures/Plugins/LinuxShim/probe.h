/*
 * The Linux shim's probe: kernel-style code that exercises one shim
 * function at a time, driven by the tests through the plugin's control
 * operation (glue.c). Commands and their argument block are shared with
 * Tests/PluginHostTests/LinuxShimTests.swift.
 */
#ifndef SHIMPROBE_H
#define SHIMPROBE_H

#include <linux/types.h>

/* The control argument: read and written in place. */
struct probe_command {
    s64 result; /* what probe_command returned */
    u64 arguments[4];
    u8 bytes[16];
    char message[128];
};

enum probe_commands {
    PROBE_SELFTEST = 1,      /* pure functions; result: checks passed (message: the first failure) */
    PROBE_READ_BEGIN,        /* result: mmu_interval_read_begin */
    PROBE_READ_RETRY,        /* [0] seq; result: mmu_interval_read_retry */
    PROBE_HMM_FAULT,         /* [0] address [1] write [2] seq [3] slot; result: hmm_range_fault; [1] out: HMM_PFN_WRITE set */
    PROBE_KMAP_READ,         /* [0] slot [1] local; bytes out */
    PROBE_KMAP_WRITE,        /* [0] slot [1] local; bytes in */
    PROBE_SET_DIRTY,         /* [0] slot */
    PROBE_PAGE_TO_PFN,       /* [0] slot; result: page_to_pfn */
    PROBE_PIN,               /* [0] address [1] pages [2] write; result: pin_user_pages */
    PROBE_UNPIN,             /* [0] dirty: unpin_user_pages(_dirty_lock) of what PROBE_PIN pinned */
    PROBE_INTERVAL_STATE,    /* result: invalidations; [0] last event [1] last blockable [2] start [3] end */
    PROBE_CONTEXT,           /* [0] case (enum probe_context); does it with the spin lock held */
    PROBE_WARN,              /* [0] case (enum probe_warning) */
    PROBE_WAIT_EVENT,        /* [0] timeout in ms (0: none); result: wait_event_timeout's, or 1 */
    PROBE_WAKE,              /* sets the flag, wake_up */
    PROBE_WAIT_COMPLETION,   /* [0] timeout in ms (0: none); result: what the wait returned, or 1 */
    PROBE_COMPLETE,          /* [0] all */
    PROBE_RWSEM,             /* [0] case (enum probe_rwsem); result: the trylock's answer, or 0 */
    PROBE_JIFFIES,           /* result: jiffies; [0] msleep first, in ms */
    PROBE_MMGET,             /* result: mmget_not_zero (then mmput) */
    PROBE_NOTIFIER,          /* [0] case (enum probe_notifier_step); result and [0..3]: counts */
    PROBE_RECLAIM_ALLOC,     /* [0] 1: arm 0: disarm and free; result: kept; [0] failed */
};

enum probe_context {
    PROBE_CONTEXT_MUTEX = 1,
    PROBE_CONTEXT_GFP_KERNEL,
    PROBE_CONTEXT_GFP_ATOMIC,
    PROBE_CONTEXT_MIGHT_SLEEP,
    PROBE_CONTEXT_MUTEX_TRYLOCK,
    PROBE_CONTEXT_DOWN_READ,
    PROBE_CONTEXT_DOWN_READ_TRYLOCK,
    PROBE_CONTEXT_MSLEEP,
    PROBE_CONTEXT_KMAP,       /* needs slot 0 */
    PROBE_CONTEXT_KMAP_LOCAL, /* needs slot 0 */
    PROBE_CONTEXT_XA_STORE_KERNEL,
    PROBE_CONTEXT_XA_STORE_ATOMIC,
    PROBE_CONTEXT_COND_RESCHED,
};

enum probe_warning {
    PROBE_WARN_ON = 1,
    PROBE_WARN_LOCKDEP,        /* lockdep_assert_held on a mutex not held */
    PROBE_WARN_MUTEX_UNLOCK,   /* mutex_unlock of a mutex not held */
    PROBE_WARN_BUG_ON,
    PROBE_WARN_ON_ONCE_TWICE,
    PROBE_WARN_DOUBLE_KFREE,
    PROBE_WARN_KUNMAP_ORDER,   /* needs slots 0 and 1 */
    PROBE_WARN_LEAK,           /* kmalloc without kfree: reported at destroy */
    PROBE_WARN_FORMAT,         /* WARN(condition, format, ...) */
    PROBE_WARN_PRINTK,         /* pr_err and pr_info: the host log, not reports */
    PROBE_WARN_HELD_LOCK_FREED,
    PROBE_WARN_UNINITIALISED,  /* a mutex used before mutex_init */
};

enum probe_rwsem {
    PROBE_DOWN_READ = 1,
    PROBE_UP_READ,
    PROBE_DOWN_WRITE_TRYLOCK,
    PROBE_DOWN_READ_TRYLOCK,
    PROBE_UP_WRITE,
    PROBE_DOWN_WRITE,
    PROBE_DOWNGRADE,
};

enum probe_notifier_step {
    PROBE_NOTIFIER_REGISTER = 1,
    PROBE_NOTIFIER_STATE,      /* result: last event; [0] starts [1] ends [2] releases [3] young calls */
    PROBE_NOTIFIER_UNREGISTER,
    PROBE_NOTIFIER_GET,        /* result: 1 if the same notifier as the first get; [0] users */
    PROBE_NOTIFIER_PUT,        /* result: free_notifier calls so far */
    PROBE_NOTIFIER_HOOKS,      /* [0] clear_flush_young [1] test_young [2] arch_invalidate_secondary_tlbs calls */
};

struct probe;
/* Opens a probe on current->mm with an interval over [start, start + length). */
struct probe *probe_open(unsigned long start, unsigned long length);
void probe_release(struct probe *probe);
/* PROBE_SELFTEST: how many checks passed, or -EINVAL with the first failure in `message`. */
long probe_selftest(char *message, size_t size);
/* The command's result (negative: an errno); outputs in `argument`. */
long probe_command(struct probe *probe, u32 command, struct probe_command *argument);

#endif /* SHIMPROBE_H */
