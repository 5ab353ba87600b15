/*
 * The Linux shim's probe: kernel-style code that exercises one shim
 * function at a time, driven by the tests through the plugin's control
 * operation (glue.c). Commands and their argument block are shared with
 * Tests/PluginHostTests/ShimProbe.swift and the LinuxShim*Tests there.
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
    PROBE_HMM_FAULT,         /* [0] address [1] write [2] seq [3] slot; result: hmm_range_fault; out: [1] HMM_PFN_WRITE set,
                                [2] hmm_pfn_to_phys [3] hmm_pfn_to_map_order */
    PROBE_KMAP_READ,         /* [0] slot [1] local; bytes out */
    PROBE_KMAP_WRITE,        /* [0] slot [1] local; bytes in */
    PROBE_SET_DIRTY,         /* [0] slot */
    PROBE_PAGE_TO_PFN,       /* [0] slot; result: page_to_pfn */
    PROBE_PIN,               /* [0] address [1] pages [2] write; result: pin_user_pages (the last pin) */
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
    PROBE_CHECK_RETRY,       /* [0] seq [1] 1: also watch it from the invalidate op; result: mmu_interval_check_retry;
                                [1] out: what the op's check said after set_seq (-1: no invalidation yet) */
    PROBE_EXTRA,             /* [0] step (enum probe_extra_step): the second interval */
    PROBE_PIN_VARIANT,       /* [0] address [1] pages [2] gup_flags [3] variant (enum probe_pin_variant);
                                result: its answer; [1] out: *locked after (remote with locked) */
    PROBE_UNPIN_ONE,         /* [0] index in the last pin: unpin_user_page; [1] 1: forget the pin set after */
    PROBE_PAGE,              /* [0] page (probe_page_at) [1] op (enum probe_page_op) [2] second page; result: its answer */
    PROBE_HIGHMEM,           /* [0] op (enum probe_highmem_op) [1] page [2] offset [3] length, or the source page; bytes */
    PROBE_DELAY,             /* [0] op (enum probe_delay_op) [1] amount; result: ns it took (ktime_get_ns); [1] out */
    PROBE_PRINTK,            /* [0] level 0..7, or 8: none; result: printk's answer */
    PROBE_MM_REFS,           /* [0] op (enum probe_mm_op); result: mm_users after; [0] out: mm_count after */
    PROBE_HMM_RANGE,         /* [0] start [1] pages (<= 512) [2] flags (enum probe_hmm_flags) [3] seq; result: hmm_range_fault;
                                out: [0] valid bits of entries 0..63 [1] write bits of 0..63 [2] entries of map order 9
                                [3] valid entries; bytes[0..8) page_to_pfn of entry 0; slot 6: entry 0's page */
    PROBE_EXCLUSIVE,         /* [0] op (enum probe_exclusive_op) [1] address [2] 1: the probe is the owner (else NULL);
                                result: 0 or the errno; slot 5: the page */
    PROBE_MIGRATE,           /* [0] op (enum probe_migrate_op) [1] start [2] pages [3] argument; see the op */
};

enum probe_migrate_op {
    PROBE_MIGRATE_REMAP = 1,     /* memremap_pages: MEMORY_DEVICE_PRIVATE, owner the probe, [2] pages, ops with a
                                    migrate_to_ram that migrates the page home ([3] 1: no owner, 2: a migrate_to_ram
                                    that fails, 3: no migrate_to_ram); result: 0 or the errno */
    PROBE_MIGRATE_TO_DEVICE,     /* migrate_vma SELECT_SYSTEM over [1], [2] pages (<= 64), pgmap_owner the probe; result:
                                    setup's; out: [0] cpages [1] src MIGRATE bits after setup [2] after pages [3] WRITE bits */
    PROBE_MIGRATE_TO_RAM,        /* the same with SELECT_DEVICE_PRIVATE, pgmap_owner the probe ([3] 1: NULL) */
    PROBE_MIGRATE_UNMAP,         /* memunmap_pages */
    PROBE_MIGRATE_HMM,           /* hmm_range_fault of the page at [1] (write), dev_private_owner the probe ([3] 1: NULL);
                                    result: its answer; out: [0] is_device_private_page [1] page_pgmap is the probe's */
    PROBE_MIGRATE_RAM_FAULTS,    /* result: migrate_to_ram calls; [0] the last one's address [1] its page was device-private
                                    and the pagemap's */
};

enum probe_exclusive_op {
    PROBE_EXCLUSIVE_MAKE = 1,    /* make_device_exclusive under mmap_read_lock; keeps the folio locked and referenced */
    PROBE_EXCLUSIVE_RELEASE,     /* folio_unlock and folio_put of it */
    PROBE_EXCLUSIVE_OWNER,       /* result: the last invalidation's owner: 1 the probe, 0 none, 2 another */
    PROBE_EXCLUSIVE_UNLOCK,      /* folio_unlock only */
};

enum probe_hmm_flags {
    PROBE_HMM_FAULT_ALL = 1,     /* default_flags HMM_PFN_REQ_FAULT (else a snapshot) */
    PROBE_HMM_WRITE = 2,         /* ... | HMM_PFN_REQ_WRITE */
    PROBE_HMM_FAULT_ODD = 4,     /* per-entry requests (pfn_flags_mask ~0): HMM_PFN_REQ_FAULT on odd entries only */
    PROBE_HMM_STALE_INPUT = 8,   /* the entries start as garbage (HMM_PFN_ERROR | 0x1000), default_flags only */
};

/* Set in the command number: run it in a scope with no mm (current->mm
 * NULL, a kernel thread's view); the probe still knows its mm. */
#define PROBE_NO_MM 0x1000u

/* Handled by the glue (glue.c), not the probe: host services a driver on
 * the shim would reach through migrate_vma_*, which the shim lacks. */
enum probe_glue_commands {
    PROBE_GLUE_TO_DEVICE = 100, /* [0] address: that page into the instance's device memory; result: pages moved */
};

enum probe_mmap_lock {
    PROBE_MMAP_NONE = 0,
    PROBE_MMAP_WRITE,
    PROBE_MMAP_READ,
};

enum probe_extra_step {
    PROBE_EXTRA_INSERT_LOCKED = 1, /* [1] start [2] length [3] mmap lock (enum probe_mmap_lock); result: the insert's */
    PROBE_EXTRA_STATE,             /* result: invalidations; [0] start [1] end [2] event of the last; [3] interval.last */
    PROBE_EXTRA_REMOVE,
};

enum probe_pin_variant {
    PROBE_PIN_FAST = 1,          /* pin_user_pages_fast, no lock held */
    PROBE_PIN_REMOTE,            /* pin_user_pages_remote(the probe's mm), mmap_read_lock held, locked NULL */
    PROBE_PIN_REMOTE_LOCKED,     /* the same with *locked = 1 */
    PROBE_PIN_REMOTE_UNLOCKED,   /* no lock held, *locked = 0 (the callee takes it) */
    PROBE_PIN_REMOTE_NO_LOCK,    /* no lock held and locked NULL: a misuse */
};

enum probe_page_op {
    PROBE_PAGE_DIRTY_LOCK = 1,   /* set_page_dirty_lock */
    PROBE_PAGE_FOLIO_DIRTY,      /* folio_mark_dirty(page_folio(page)) */
    PROBE_PAGE_ACCESSED,         /* mark_page_accessed */
    PROBE_PAGE_FOLIO_ACCESSED,   /* folio_mark_accessed(page_folio(page)) */
    PROBE_PAGE_DEVICE_PRIVATE,   /* is_device_private_page */
    PROBE_PAGE_ZONE_DEVICE,      /* is_zone_device_page */
    PROBE_PAGE_FOLIO_SAME,       /* page_folio(page) == page_folio(second page) */
    PROBE_PAGE_FOLIO_CHECKS,     /* bits: 1 folio_page(folio, 0) == page, 2 folio_pfn == page_to_pfn, 4 folio_nr_pages == 1 */
    PROBE_PAGE_GET,              /* get_page */
    PROBE_PAGE_PUT,              /* put_page */
    PROBE_PAGE_FOLIO_GET,        /* folio_get(page_folio(page)) */
    PROBE_PAGE_FOLIO_PUT,        /* folio_put(page_folio(page)) */
    PROBE_PAGE_GET_LOCKED,       /* get_page under the probe's spin lock (a driver's notifier lock) */
};

enum probe_highmem_op {
    PROBE_MEMCPY_FROM_PAGE = 1,  /* bytes out [0, length): from the page at offset */
    PROBE_MEMCPY_TO_PAGE,        /* bytes in [0, length) to the page at offset */
    PROBE_CLEAR_HIGHPAGE,
    PROBE_COPY_HIGHPAGE,         /* to the page [1] from the page [3] */
    PROBE_KMAP_LOCAL_FOLIO,      /* bytes out [0, length): kmap_local_folio(page_folio(page), offset) */
};

enum probe_delay_op {
    PROBE_NDELAY = 1,            /* [1] ns */
    PROBE_UDELAY,                /* [1] us */
    PROBE_MDELAY,                /* [1] ms */
    PROBE_FSLEEP,                /* [1] us */
    PROBE_MSLEEP_INTERRUPTIBLE,  /* [1] ms; [1] out: its answer */
    PROBE_KTIME_GET_NS,          /* result: ktime_get_ns(); [1] out: ktime_get() after it */
};

enum probe_mm_op {
    PROBE_MM_READ = 1,
    PROBE_MM_GET,                /* mmget */
    PROBE_MM_PUT,                /* mmput */
    PROBE_MM_GRAB,               /* mmgrab */
    PROBE_MM_DROP,               /* mmdrop */
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
    PROBE_CONTEXT_SET_PAGE_DIRTY,      /* needs slot 0 */
    PROBE_CONTEXT_SET_PAGE_DIRTY_LOCK, /* needs slot 0 */
    PROBE_CONTEXT_MARK_ACCESSED,       /* needs slot 0 */
    PROBE_CONTEXT_MEMCPY_FROM_PAGE,    /* needs slot 0 */
    PROBE_CONTEXT_PIN_FAST,            /* the interval's first page, unpinned again */
    PROBE_CONTEXT_CHECK_RETRY,
    PROBE_CONTEXT_KTIME_GET_NS,
    PROBE_CONTEXT_NDELAY,
    PROBE_CONTEXT_MDELAY,
    PROBE_CONTEXT_FSLEEP_SHORT,        /* 5 us: a spin */
    PROBE_CONTEXT_FSLEEP_LONG,         /* 100 us: a sleep */
    PROBE_CONTEXT_MSLEEP_INTERRUPTIBLE,
    PROBE_CONTEXT_PRINTK,
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
    PROBE_WARN_LOCKDEP_WRITE,  /* lockdep_assert_held_write on a semaphore held for reading */
    PROBE_WARN_LOCKDEP_READ,   /* lockdep_assert_held_read on a semaphore not held */
    PROBE_WARN_SPIN_NOT_LOCKED, /* assert_spin_locked on a spin lock not held */
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
    PROBE_NOTIFIER_REGISTER_LOCKED, /* __mmu_notifier_register, [1] mmap lock (enum probe_mmap_lock) */
    PROBE_NOTIFIER_GET_LOCKED,      /* mmu_notifier_get_locked, [1] mmap lock; as PROBE_NOTIFIER_GET */
    PROBE_NOTIFIER_GET_SATURATED,   /* mmu_notifier_get with the shared notifier's users at UINT_MAX */
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
