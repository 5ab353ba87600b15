/*
 * The Linux shim probe's whole-space notifiers (PROBE_NOTIFIER: register,
 * get and put, with and without the mmap lock their _locked forms ask
 * for) and its second interval (PROBE_EXTRA: mmu_interval_notifier_insert_locked
 * over a range of its own).
 */
#include <linux/err.h>
#include <linux/kernel.h>
#include <linux/mm.h>
#include <linux/mmu_notifier.h>
#include <linux/sched.h>
#include <linux/slab.h>
#include <linux/spinlock.h>

#include "probe.h"
#include "probe_state.h"

/* Takes current->mm's mmap lock as `mode` says (enum probe_mmap_lock). */
static void mmap_lock_as(u64 mode) {
    if (mode == PROBE_MMAP_WRITE) mmap_write_lock(current->mm);
    if (mode == PROBE_MMAP_READ) mmap_read_lock(current->mm);
}

static void mmap_unlock_as(u64 mode) {
    if (mode == PROBE_MMAP_WRITE) mmap_write_unlock(current->mm);
    if (mode == PROBE_MMAP_READ) mmap_read_unlock(current->mm);
}

static struct probe_notifier *notifier_of(struct mmu_notifier *mn) {
    return container_of(mn, struct probe_notifier, notifier);
}

static int notifier_start(struct mmu_notifier *mn, const struct mmu_notifier_range *range) {
    atomic_inc(&notifier_of(mn)->starts);
    notifier_of(mn)->last_event = range->event;
    return 0;
}

static void notifier_end(struct mmu_notifier *mn, const struct mmu_notifier_range *range) {
    (void)range;
    atomic_inc(&notifier_of(mn)->ends);
}

static void notifier_release(struct mmu_notifier *mn, struct mm_struct *mm) {
    (void)mm;
    atomic_inc(&notifier_of(mn)->releases);
}

static int notifier_young(struct mmu_notifier *mn, struct mm_struct *mm, unsigned long start, unsigned long end) {
    (void)mm, (void)start, (void)end;
    atomic_inc(&notifier_of(mn)->young);
    return 1;
}

/* Says every page is young (the test checks the answer gets through). */
static int notifier_test_young(struct mmu_notifier *mn, struct mm_struct *mm, unsigned long address) {
    (void)mm, (void)address;
    atomic_inc(&notifier_of(mn)->tested);
    return 1;
}

static void notifier_tlbs(struct mmu_notifier *mn, struct mm_struct *mm, unsigned long start, unsigned long end) {
    (void)mm, (void)start, (void)end;
    atomic_inc(&notifier_of(mn)->flushes);
}

static const struct mmu_notifier_ops probe_notifier_ops = {
    .release = notifier_release,
    .clear_flush_young = notifier_young,
    .test_young = notifier_test_young,
    .arch_invalidate_secondary_tlbs = notifier_tlbs,
    .invalidate_range_start = notifier_start,
    .invalidate_range_end = notifier_end,
};

/* mmu_notifier_get's: the probe it is for, passed by the caller's thread. */
static _Thread_local struct probe *getting_for;

static struct mmu_notifier *shared_alloc(struct mm_struct *mm) {
    (void)mm;
    struct probe_notifier *pn = kzalloc(sizeof(*pn), GFP_KERNEL);
    if (!pn) return ERR_PTR(-ENOMEM);
    pn->probe = getting_for;
    return &pn->notifier;
}

static void shared_free(struct mmu_notifier *mn) {
    atomic_inc(&notifier_of(mn)->probe->frees);
    kfree(notifier_of(mn));
}

static const struct mmu_notifier_ops probe_shared_ops = {
    .invalidate_range_start = notifier_start,
    .invalidate_range_end = notifier_end,
    .alloc_notifier = shared_alloc,
    .free_notifier = shared_free,
};

long probe_notifier(struct probe *probe, u64 which, struct probe_command *c) {
    struct probe_notifier *pn = probe->registered;
    struct mmu_notifier *mn;
    unsigned int users;
    int ret;

    switch (which) {
    case PROBE_NOTIFIER_REGISTER:
    case PROBE_NOTIFIER_REGISTER_LOCKED:
        if (pn) return -EBUSY;
        pn = kzalloc(sizeof(*pn), GFP_KERNEL);
        if (!pn) return -ENOMEM;
        pn->notifier.ops = &probe_notifier_ops;
        pn->probe = probe;
        if (which == PROBE_NOTIFIER_REGISTER) {
            ret = mmu_notifier_register(&pn->notifier, current->mm);
        } else {
            mmap_lock_as(c->arguments[1]);
            ret = __mmu_notifier_register(&pn->notifier, current->mm);
            mmap_unlock_as(c->arguments[1]);
        }
        if (ret) {
            kfree(pn);
            return ret;
        }
        probe->registered = pn;
        return 0;
    case PROBE_NOTIFIER_STATE:
        if (!pn) return -ENOENT;
        c->arguments[0] = (u64)atomic_read(&pn->starts);
        c->arguments[1] = (u64)atomic_read(&pn->ends);
        c->arguments[2] = (u64)atomic_read(&pn->releases);
        c->arguments[3] = (u64)atomic_read(&pn->young);
        return pn->last_event;
    case PROBE_NOTIFIER_HOOKS:
        if (!pn) return -ENOENT;
        c->arguments[0] = (u64)atomic_read(&pn->young);
        c->arguments[1] = (u64)atomic_read(&pn->tested);
        c->arguments[2] = (u64)atomic_read(&pn->flushes);
        return 0;
    case PROBE_NOTIFIER_UNREGISTER:
        if (!pn) return -ENOENT;
        mmu_notifier_unregister(&pn->notifier, current->mm);
        c->arguments[2] = (u64)atomic_read(&pn->releases);
        kfree(pn);
        probe->registered = NULL;
        return 0;
    case PROBE_NOTIFIER_GET:
    case PROBE_NOTIFIER_GET_LOCKED:
        getting_for = probe;
        if (which == PROBE_NOTIFIER_GET) {
            mn = mmu_notifier_get(&probe_shared_ops, current->mm);
        } else {
            mmap_lock_as(c->arguments[1]);
            mn = mmu_notifier_get_locked(&probe_shared_ops, current->mm);
            mmap_unlock_as(c->arguments[1]);
        }
        getting_for = NULL;
        if (IS_ERR(mn)) return (int)PTR_ERR(mn);
        if (!probe->gotten) probe->gotten = mn;
        c->arguments[0] = mn->users;
        return mn == probe->gotten;
    case PROBE_NOTIFIER_PUT:
        if (!probe->gotten) return -ENOENT;
        mn = probe->gotten;
        if (mn->users == 1) probe->gotten = NULL;
        mmu_notifier_put(mn);
        return atomic_read(&probe->frees);
    case PROBE_NOTIFIER_GET_SATURATED:
        /* A fixture's liberty: no driver sets users. The count restored
         * afterwards is the one the get found. */
        if (!probe->gotten) return -ENOENT;
        users = probe->gotten->users;
        probe->gotten->users = UINT_MAX;
        getting_for = probe;
        mn = mmu_notifier_get(&probe_shared_ops, current->mm);
        getting_for = NULL;
        ret = IS_ERR(mn) ? (int)PTR_ERR(mn) : mn == probe->gotten;
        probe->gotten->users = users;
        /* A notifier it did make (a shim that ignores the saturated one) is given back. */
        if (!IS_ERR(mn) && mn != probe->gotten) mmu_notifier_put(mn);
        return ret;
    }
    return -EINVAL;
}


/* ---------------------------------------------------------------------- */
/* The second interval                                                     */
/* ---------------------------------------------------------------------- */

static bool extra_invalidate(struct mmu_interval_notifier *mni, const struct mmu_notifier_range *range,
                             unsigned long cur_seq) {
    struct probe_extra *extra = container_of(mni, struct probe_extra, notifier);
    struct probe *probe = container_of(extra, struct probe, extra);

    /* A spin lock: never sleeps, so every range is fine. */
    spin_lock(&probe->lock);
    mmu_interval_set_seq(mni, cur_seq);
    extra->last_event = range->event;
    extra->last_start = range->start;
    extra->last_end = range->end;
    atomic_inc(&extra->invalidations);
    spin_unlock(&probe->lock);
    return true;
}

static const struct mmu_interval_notifier_ops extra_ops = {
    .invalidate = extra_invalidate,
};

long probe_extra(struct probe *probe, struct probe_command *c) {
    struct probe_extra *extra = &probe->extra;
    u64 *a = c->arguments;
    int ret;

    switch (a[0]) {
    case PROBE_EXTRA_INSERT_LOCKED:
        if (extra->inserted) return -EBUSY;
        mmap_lock_as(a[3]);
        ret = mmu_interval_notifier_insert_locked(&extra->notifier, current->mm, a[1], a[2], &extra_ops);
        mmap_unlock_as(a[3]);
        extra->inserted = ret == 0;
        return ret;
    case PROBE_EXTRA_STATE:
        spin_lock(&probe->lock);
        a[0] = extra->last_start;
        a[1] = extra->last_end;
        a[2] = (u64)extra->last_event;
        a[3] = extra->inserted ? extra->notifier.interval.last : 0;
        spin_unlock(&probe->lock);
        return atomic_read(&extra->invalidations);
    case PROBE_EXTRA_REMOVE:
        if (!extra->inserted) return -ENOENT;
        mmu_interval_notifier_remove(&extra->notifier);
        extra->inserted = false;
        return 0;
    }
    return -EINVAL;
}
