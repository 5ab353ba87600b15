/*
 * mmulab Linux shim: struct mmu_interval_notifier on the host's interval
 * subscriptions (<linux/mmu_notifier.h>). The sequence count is the
 * host's: read_begin, read_retry, check_retry and set_seq are its
 * interval_read_begin, interval_read_retry and interval_set_seq.
 */
#include <stdlib.h>

#include "internal.h"

#include <linux/sched.h>
#include <linux/sched/mm.h>

static bool invalidate(void *data, mmulab_interval *interval, const mmulab_range *lab, uint64_t current_seq) {
    (void)interval;
    struct mmulab_interval_handle *h = data;
    struct mmu_interval_notifier *subscription = h->subscription;
    struct mmu_notifier_range range;
    shim_range_from_lab(&range, subscription->mm, lab);
    mmulab_linux_scope scope = mmulab_linux_enter(h->device, subscription->mm);
    bool done = subscription->ops->invalidate(subscription, &range, (unsigned long)current_seq);
    mmulab_linux_leave(scope);
    return done;
}

static const mmulab_interval_ops interval_ops = {
    .struct_size = sizeof(mmulab_interval_ops),
    .invalidate = invalidate,
};

static int insert(struct mmu_interval_notifier *subscription, struct mm_struct *mm, unsigned long start,
                  unsigned long length, const struct mmu_interval_notifier_ops *ops) {
    struct mmulab_linux_device *device = shim_mm(mm)->device;
    if (WARN_ON(!ops || !ops->invalidate)) return -EINVAL;
    /* An address space that exited meanwhile (the lab's exit can race an
     * open, which a process's own open cannot in Linux) is refused by the
     * host: -EFAULT, no report. */
    unsigned long last;
    if (length == 0 || __builtin_add_overflow(start, length - 1, &last)) return -EOVERFLOW;
    /* The host watches whole pages; invalidations are page-granular, so
     * the pages the interval touches hear exactly what it would. */
    unsigned long first_page = start & PAGE_MASK;
    unsigned long end_page = (last & PAGE_MASK) + PAGE_SIZE; /* 0 if the interval reaches the top */
    if (end_page == 0) end_page = PAGE_MASK;                 /* the host's ranges end below 2^64 */
    struct mmulab_interval_handle *h = calloc(1, sizeof *h);
    if (!h) return -ENOMEM;
    h->device = device;
    h->subscription = subscription;
    subscription->interval.start = start;
    subscription->interval.last = last;
    subscription->ops = ops;
    subscription->mm = mm;
    subscription->mmulab_interval = h;
    mmgrab(mm);
    device->host->lock(device->lock);
    list_add_tail(&h->link, &shim_mm(mm)->intervals);
    device->host->unlock(device->lock);
    mmulab_error error = { 0 };
    mmulab_status status = device->host->interval_insert(device->ctx, shim_mm(mm)->address_space, first_page,
                                                         end_page - first_page, &interval_ops, h, &h->host, &error);
    if (status != MMULAB_OK) {
        device->host->lock(device->lock);
        list_del(&h->link);
        device->host->unlock(device->lock);
        subscription->mmulab_interval = NULL;
        free(h);
        mmdrop(mm);
        return shim_errno_from_status(status);
    }
    return 0;
}

/* Linux's takes mmap_lock for writing when it must register the mm's
 * interval tree: may sleep. */
int mmu_interval_notifier_insert(struct mmu_interval_notifier *subscription, struct mm_struct *mm,
                                 unsigned long start, unsigned long length,
                                 const struct mmu_interval_notifier_ops *ops) {
    might_sleep();
    return insert(subscription, mm, start, length, ops);
}

/* The same, for a caller that holds mmap_lock for writing (asserted, as
 * Linux's mmap_assert_write_locked does). */
int mmu_interval_notifier_insert_locked(struct mmu_interval_notifier *subscription, struct mm_struct *mm,
                                        unsigned long start, unsigned long length,
                                        const struct mmu_interval_notifier_ops *ops) {
    mmap_assert_write_locked(mm);
    return insert(subscription, mm, start, length, ops);
}

/* Unhooks from the host (no invalidate runs after it returns) and from the mm's list. */
static void unhook(struct mmulab_interval_handle *h) {
    struct mmulab_linux_device *device = h->device;
    device->host->interval_remove(device->ctx, h->host);
    device->host->lock(device->lock);
    list_del(&h->link);
    device->host->unlock(device->lock);
    h->subscription->mmulab_interval = NULL;
    free(h);
}

void mmu_interval_notifier_remove(struct mmu_interval_notifier *subscription) {
    might_sleep();
    struct mmulab_interval_handle *h = subscription->mmulab_interval;
    if (WARN_ON(!h)) return;
    struct mm_struct *mm = subscription->mm;
    unhook(h);
    mmdrop(mm);
}

static mmulab_interval *host_interval(struct mmu_interval_notifier *subscription, const char *what) {
    struct mmulab_interval_handle *h = subscription->mmulab_interval;
    if (!h) mmulab_linux_report("BUG", "an interval notifier that is not inserted", "interval.c", __LINE__, what);
    return h ? h->host : NULL;
}

unsigned long mmu_interval_read_begin(struct mmu_interval_notifier *subscription) {
    mmulab_interval *interval = host_interval(subscription, "mmu_interval_read_begin");
    if (!interval) return 0;
    return (unsigned long)subscription->mmulab_interval->device->host->interval_read_begin(interval);
}

bool mmu_interval_read_retry(struct mmu_interval_notifier *subscription, unsigned long seq) {
    mmulab_interval *interval = host_interval(subscription, "mmu_interval_read_retry");
    if (!interval) return true;
    return subscription->mmulab_interval->device->host->interval_read_retry(interval, seq);
}

bool mmu_interval_check_retry(struct mmu_interval_notifier *subscription, unsigned long seq) {
    return mmu_interval_read_retry(subscription, seq);
}

void mmu_interval_set_seq(struct mmu_interval_notifier *subscription, unsigned long cur_seq) {
    mmulab_interval *interval = host_interval(subscription, "mmu_interval_set_seq");
    if (!interval) return;
    subscription->mmulab_interval->device->host->interval_set_seq(interval, cur_seq);
}

void shim_intervals_unhook(struct mmulab_linux_mm *m) {
    while (!list_empty(&m->intervals)) {
        struct mmulab_interval_handle *h = list_first_entry(&m->intervals, struct mmulab_interval_handle, link);
        shim_log(m->device, MMULAB_LOG_MISBEHAVING,
                 "an mmu_interval_notifier was still inserted when the device was destroyed");
        unhook(h);
    }
}
