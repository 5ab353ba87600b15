/*
 * The Linux shim's probe (probe.h): kernel-style code, one shim function
 * at a time. A test fixture, not an example: it keeps page pointers past
 * their invalidations on purpose (so the tests can show a stale kmap is
 * found), and breaks rules on request.
 */
#include <stdio.h>

#include <linux/atomic.h>
#include <linux/completion.h>
#include <linux/delay.h>
#include <linux/err.h>
#include <linux/highmem.h>
#include <linux/hmm.h>
#include <linux/jiffies.h>
#include <linux/kref.h>
#include <linux/ktime.h>
#include <linux/list.h>
#include <linux/mm.h>
#include <linux/mmu_notifier.h>
#include <linux/mutex.h>
#include <linux/rwsem.h>
#include <linux/sched.h>
#include <linux/sched/mm.h>
#include <linux/slab.h>
#include <linux/spinlock.h>
#include <linux/string.h>
#include <linux/vmalloc.h>
#include <linux/wait.h>
#include <linux/xarray.h>

#include "probe.h"
#include "probe_state.h"

static bool probe_invalidate(struct mmu_interval_notifier *mni, const struct mmu_notifier_range *range,
                             unsigned long cur_seq) {
    struct probe *probe = container_of(mni, struct probe, notifier);

    if (mmu_notifier_range_blockable(range))
        mutex_lock(&probe->mutex);
    else if (!mutex_trylock(&probe->mutex))
        return false;
    mmu_interval_set_seq(mni, cur_seq);
    /* What a fault path racing this invalidation would be told now, before
     * the invalidation ends: the sequence it began with is stale. */
    if (probe->watching) probe->retry_in_callback = mmu_interval_check_retry(mni, probe->watched_seq);
    probe->last_event = range->event;
    probe->last_owner = range->owner;
    probe->last_blockable = mmu_notifier_range_blockable(range);
    probe->last_start = range->start;
    probe->last_end = range->end;
    atomic_inc(&probe->invalidations);
    if (probe->alloc_armed && probe->kept_count < KEPT) {
        void *p = kmalloc(PAGE_SIZE, GFP_ATOMIC | __GFP_NOWARN);
        if (p)
            probe->kept[probe->kept_count++] = p;
        else
            atomic_inc(&probe->alloc_failed);
    }
    mutex_unlock(&probe->mutex);
    return true;
}

static const struct mmu_interval_notifier_ops probe_interval_ops = {
    .invalidate = probe_invalidate,
};

struct probe *probe_open(unsigned long start, unsigned long length) {
    struct probe *probe = kzalloc(sizeof(*probe), GFP_KERNEL);

    if (!probe) return NULL;
    mutex_init(&probe->mutex);
    spin_lock_init(&probe->lock);
    init_rwsem(&probe->sem);
    init_completion(&probe->done);
    init_waitqueue_head(&probe->wq);
    if (mmu_interval_notifier_insert(&probe->notifier, current->mm, start, length, &probe_interval_ops)) {
        kfree(probe);
        return NULL;
    }
    return probe;
}

void probe_release(struct probe *probe) {
    if (probe->extra.inserted) mmu_interval_notifier_remove(&probe->extra.notifier);
    mmu_interval_notifier_remove(&probe->notifier);
    for (int i = 0; i < probe->kept_count; i++) kfree(probe->kept[i]);
    kfree(probe);
}

/* ---------------------------------------------------------------------- */
/* Commands                                                                */
/* ---------------------------------------------------------------------- */

static int probe_context(struct probe *probe, u64 which) {
    void *p;
    char *mapped;
    struct xarray xa;

    xa_init(&xa);
    spin_lock(&probe->lock);
    switch (which) {
    case PROBE_CONTEXT_MUTEX:
        mutex_lock(&probe->mutex);
        mutex_unlock(&probe->mutex);
        break;
    case PROBE_CONTEXT_GFP_KERNEL:
    case PROBE_CONTEXT_GFP_ATOMIC:
        p = kmalloc(32, which == PROBE_CONTEXT_GFP_KERNEL ? GFP_KERNEL : GFP_ATOMIC);
        kfree(p);
        break;
    case PROBE_CONTEXT_MIGHT_SLEEP: might_sleep(); break;
    case PROBE_CONTEXT_MUTEX_TRYLOCK:
        if (mutex_trylock(&probe->mutex)) mutex_unlock(&probe->mutex);
        break;
    case PROBE_CONTEXT_DOWN_READ:
        down_read(&probe->sem);
        up_read(&probe->sem);
        break;
    case PROBE_CONTEXT_DOWN_READ_TRYLOCK:
        if (down_read_trylock(&probe->sem)) up_read(&probe->sem);
        break;
    case PROBE_CONTEXT_MSLEEP: msleep(1); break;
    case PROBE_CONTEXT_KMAP:
        kmap(probe->slots[0]);
        kunmap(probe->slots[0]);
        break;
    case PROBE_CONTEXT_KMAP_LOCAL:
        mapped = kmap_local_page(probe->slots[0]);
        kunmap_local(mapped);
        break;
    case PROBE_CONTEXT_COND_RESCHED: cond_resched(); break;
    case PROBE_CONTEXT_SET_PAGE_DIRTY: set_page_dirty(probe->slots[0]); break;
    case PROBE_CONTEXT_SET_PAGE_DIRTY_LOCK: set_page_dirty_lock(probe->slots[0]); break;
    case PROBE_CONTEXT_MARK_ACCESSED: mark_page_accessed(probe->slots[0]); break;
    case PROBE_CONTEXT_MEMCPY_FROM_PAGE: {
        char bytes[8];
        memcpy_from_page(bytes, probe->slots[0], 0, sizeof(bytes));
        break;
    }
    case PROBE_CONTEXT_PIN_FAST: {
        struct page *page;
        if (pin_user_pages_fast(probe->notifier.interval.start, 1, 0, &page) == 1) unpin_user_page(page);
        break;
    }
    case PROBE_CONTEXT_CHECK_RETRY: (void)mmu_interval_check_retry(&probe->notifier, 0); break;
    case PROBE_CONTEXT_KTIME_GET_NS: (void)ktime_get_ns(); break;
    case PROBE_CONTEXT_NDELAY: ndelay(1000); break;
    case PROBE_CONTEXT_MDELAY: mdelay(1); break;
    case PROBE_CONTEXT_FSLEEP_SHORT: fsleep(5); break;
    case PROBE_CONTEXT_FSLEEP_LONG: fsleep(100); break;
    case PROBE_CONTEXT_MSLEEP_INTERRUPTIBLE: (void)msleep_interruptible(1); break;
    case PROBE_CONTEXT_PRINTK: pr_warn("probe under a spin lock\n"); break;
    case PROBE_CONTEXT_XA_STORE_KERNEL:
    case PROBE_CONTEXT_XA_STORE_ATOMIC:
        xa_store(&xa, 1, probe, which == PROBE_CONTEXT_XA_STORE_KERNEL ? GFP_KERNEL : GFP_ATOMIC);
        break;
    }
    spin_unlock(&probe->lock);
    xa_destroy(&xa);
    return 0;
}

static int probe_warning(struct probe *probe, u64 which) {
    void *p;
    char *first, *second;

    switch (which) {
    case PROBE_WARN_ON: WARN_ON(probe != NULL); break;
    case PROBE_WARN_LOCKDEP: lockdep_assert_held(&probe->mutex); break;
    case PROBE_WARN_MUTEX_UNLOCK: mutex_unlock(&probe->mutex); break;
    case PROBE_WARN_BUG_ON: BUG_ON(probe->flag == probe->flag); break;
    case PROBE_WARN_ON_ONCE_TWICE:
        for (int i = 0; i < 2; i++) WARN_ON_ONCE(i >= 0);
        break;
    case PROBE_WARN_DOUBLE_KFREE:
        p = kmalloc(16, GFP_KERNEL);
        kfree(p);
        kfree(p);
        break;
    case PROBE_WARN_KUNMAP_ORDER:
        first = kmap_local_page(probe->slots[0]);
        second = kmap_local_page(probe->slots[1]);
        kunmap_local(first);
        kunmap_local(second);
        break;
    case PROBE_WARN_LEAK: (void)kmalloc(100, GFP_KERNEL); break;
    case PROBE_WARN_FORMAT: WARN(probe != NULL, "bad value %d", 7); break;
    case PROBE_WARN_PRINTK:
        pr_err("probe error %d\n", 42);
        pr_info("probe info\n");
        break;
    case PROBE_WARN_HELD_LOCK_FREED: {
        struct mutex *held = kmalloc(sizeof(*held), GFP_KERNEL);
        mutex_init(held);
        mutex_lock(held);
        kfree(held);
        break;
    }
    case PROBE_WARN_LOCKDEP_WRITE:
        down_read(&probe->sem);
        lockdep_assert_held_write(&probe->sem);
        up_read(&probe->sem);
        break;
    case PROBE_WARN_LOCKDEP_READ: lockdep_assert_held_read(&probe->sem); break;
    case PROBE_WARN_SPIN_NOT_LOCKED: assert_spin_locked(&probe->lock); break;
    case PROBE_WARN_UNINITIALISED: {
        struct mutex never = { 0 };
        mutex_lock(&never);
        mutex_unlock(&never);
        break;
    }
    }
    return 0;
}

static int probe_rwsem(struct probe *probe, u64 which) {
    switch (which) {
    case PROBE_DOWN_READ: down_read(&probe->sem); return 0;
    case PROBE_UP_READ: up_read(&probe->sem); return 0;
    case PROBE_DOWN_WRITE_TRYLOCK: return down_write_trylock(&probe->sem);
    case PROBE_DOWN_READ_TRYLOCK: return down_read_trylock(&probe->sem);
    case PROBE_UP_WRITE: up_write(&probe->sem); return 0;
    case PROBE_DOWN_WRITE: down_write(&probe->sem); return 0;
    case PROBE_DOWNGRADE: downgrade_write(&probe->sem); return 0;
    }
    return -EINVAL;
}

struct page *probe_page_at(struct probe *probe, u64 slot) {
    if (slot < SLOTS) return probe->slots[slot];
    if (slot >= PINNED_SLOT && slot - PINNED_SLOT < probe->pinned_count) return probe->pinned[slot - PINNED_SLOT];
    return NULL;
}

long probe_command(struct probe *probe, u32 command, struct probe_command *c) {
    u64 *a = c->arguments;
    struct hmm_range range;
    unsigned long pfn;
    struct page *page;
    char *mapped;
    int ret;

    switch (command) {
    case PROBE_SELFTEST: return probe_selftest(c->message, sizeof(c->message));
    case PROBE_READ_BEGIN: return (long)mmu_interval_read_begin(&probe->notifier);
    case PROBE_READ_RETRY: return mmu_interval_read_retry(&probe->notifier, a[0]);
    case PROBE_HMM_FAULT:
        if (a[3] >= SLOTS) return -EINVAL;
        range = (struct hmm_range){
            .notifier = &probe->notifier,
            .notifier_seq = a[2],
            .start = a[0],
            .end = a[0] + PAGE_SIZE,
            .hmm_pfns = &pfn,
            .default_flags = HMM_PFN_REQ_FAULT | (a[1] ? HMM_PFN_REQ_WRITE : 0),
        };
        mmap_read_lock(current->mm);
        ret = hmm_range_fault(&range);
        mmap_read_unlock(current->mm);
        if (ret == 0) {
            probe->slots[a[3]] = hmm_pfn_to_page(pfn);
            a[1] = (pfn & HMM_PFN_WRITE) != 0;
            a[2] = hmm_pfn_to_phys(pfn);
            a[3] = hmm_pfn_to_map_order(pfn);
        }
        return ret;
    case PROBE_KMAP_READ:
    case PROBE_KMAP_WRITE:
        page = a[0] < SLOTS ? probe->slots[a[0]] : NULL;
        if (!page) return -ENOENT;
        mapped = a[1] ? kmap_local_page(page) : kmap(page);
        if (command == PROBE_KMAP_READ)
            memcpy(c->bytes, mapped, sizeof(c->bytes));
        else
            memcpy(mapped, c->bytes, sizeof(c->bytes));
        if (a[1])
            kunmap_local(mapped);
        else
            kunmap(page);
        return 0;
    case PROBE_SET_DIRTY:
        if (a[0] >= SLOTS || !probe->slots[a[0]]) return -ENOENT;
        return set_page_dirty(probe->slots[a[0]]);
    case PROBE_PAGE_TO_PFN:
        if (a[0] >= SLOTS || !probe->slots[a[0]]) return -ENOENT;
        return (long)page_to_pfn(probe->slots[a[0]]);
    case PROBE_PIN:
        if (a[1] > ARRAY_SIZE(probe->pinned) || probe->pinned_count) return -EINVAL;
        mmap_read_lock(current->mm);
        ret = (int)pin_user_pages(a[0], a[1], a[2] ? FOLL_WRITE | FOLL_LONGTERM : FOLL_LONGTERM, probe->pinned);
        mmap_read_unlock(current->mm);
        if (ret > 0) probe->pinned_count = (unsigned long)ret;
        /* A pinned page may be kmapped: slot 7 is the first (and PINNED_SLOT + i the i-th). */
        if (ret > 0) probe->slots[7] = probe->pinned[0];
        return ret;
    case PROBE_UNPIN:
        if (a[0])
            unpin_user_pages_dirty_lock(probe->pinned, probe->pinned_count, true);
        else
            unpin_user_pages(probe->pinned, probe->pinned_count);
        probe->pinned_count = 0;
        return 0;
    case PROBE_INTERVAL_STATE:
        mutex_lock(&probe->mutex);
        a[0] = (u64)probe->last_event;
        a[1] = probe->last_blockable;
        a[2] = probe->last_start;
        a[3] = probe->last_end;
        mutex_unlock(&probe->mutex);
        return atomic_read(&probe->invalidations);
    case PROBE_CONTEXT: return probe_context(probe, a[0]);
    case PROBE_WARN: return probe_warning(probe, a[0]);
    case PROBE_WAIT_EVENT:
        if (a[0] == 0) {
            wait_event(probe->wq, READ_ONCE(probe->flag));
            return 1;
        }
        return (int)wait_event_timeout(probe->wq, READ_ONCE(probe->flag), msecs_to_jiffies((unsigned int)a[0]));
    case PROBE_WAKE:
        WRITE_ONCE(probe->flag, true);
        wake_up(&probe->wq);
        return 0;
    case PROBE_WAIT_COMPLETION:
        if (a[0] == 0) {
            wait_for_completion(&probe->done);
            return 1;
        }
        return (int)wait_for_completion_timeout(&probe->done, msecs_to_jiffies((unsigned int)a[0]));
    case PROBE_COMPLETE:
        if (a[0])
            complete_all(&probe->done);
        else
            complete(&probe->done);
        return 0;
    case PROBE_RWSEM: return probe_rwsem(probe, a[0]);
    case PROBE_JIFFIES:
        if (a[0]) msleep((unsigned int)a[0]);
        return (long)jiffies;
    case PROBE_MMGET:
        if (!mmget_not_zero(current->mm)) return 0;
        mmput(current->mm);
        return 1;
    case PROBE_NOTIFIER: return probe_notifier(probe, a[0], c);
    case PROBE_CHECK_RETRY:
        mutex_lock(&probe->mutex);
        if (a[1]) {
            probe->watching = true;
            probe->watched_seq = a[0];
            probe->retry_in_callback = -1;
        }
        a[1] = (u64)(s64)probe->retry_in_callback;
        mutex_unlock(&probe->mutex);
        return mmu_interval_check_retry(&probe->notifier, a[0]);
    case PROBE_EXTRA: return probe_extra(probe, c);
    case PROBE_PIN_VARIANT: return probe_pin_variant(probe, c);
    case PROBE_UNPIN_ONE: return probe_unpin_one(probe, c);
    case PROBE_PAGE: return probe_page(probe, c);
    case PROBE_HIGHMEM: return probe_highmem(probe, c);
    case PROBE_DELAY: return probe_delay(probe, c);
    case PROBE_PRINTK: return probe_printk(probe, c);
    case PROBE_MM_REFS: return probe_mm_refs(probe, c);
    case PROBE_HMM_RANGE: return probe_hmm_range(probe, c);
    case PROBE_EXCLUSIVE: return probe_exclusive(probe, c);
    case PROBE_MIGRATE: return probe_migrate(probe, c);
    case PROBE_RECLAIM_ALLOC:
        mutex_lock(&probe->mutex);
        probe->alloc_armed = a[0] != 0;
        ret = probe->kept_count;
        if (!probe->alloc_armed) {
            for (int i = 0; i < probe->kept_count; i++) kfree(probe->kept[i]);
            probe->kept_count = 0;
        }
        a[0] = (u64)atomic_read(&probe->alloc_failed);
        mutex_unlock(&probe->mutex);
        return ret;
    }
    return -EINVAL;
}
