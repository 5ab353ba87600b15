/*
 * kmirror: a mirror device in kernel C (see kmirror.h). Written here in the
 * manner of lib/test_hmm.c, against the kernel's documented API:
 *
 *   - an interval notifier over the whole address space of the process
 *     that opened the device;
 *   - a device page table in an xarray, a struct page pointer per page,
 *     tagged when the device may write through it;
 *   - the canonical fault loop: mmu_interval_read_begin, hmm_range_fault
 *     under mmap_read_lock, then under the mutex mmu_interval_read_retry
 *     before installing;
 *   - the invalidation takes the same mutex (or, when it may not sleep,
 *     tries it and refuses), calls mmu_interval_set_seq, and erases the
 *     range;
 *   - the device reads and writes pages through kmap, under the mutex, and
 *     reports what it wrote with set_page_dirty before it lets go.
 *
 * Nothing here is mmulab's: built against the Linux shim it runs in the
 * lab; the KMIRROR_BUG_* bits break it the ways drivers break.
 */
#include <linux/highmem.h>
#include <linux/hmm.h>
#include <linux/jiffies.h>
#include <linux/mm.h>
#include <linux/mmu_notifier.h>
#include <linux/mutex.h>
#include <linux/sched.h>
#include <linux/sched/mm.h>
#include <linux/slab.h>
#include <linux/string.h>
#include <linux/xarray.h>

#include "kmirror.h"

/* The xarray pointer tag of an entry the device may write through. */
#define KMIRROR_TAG_WRITE 3UL
/* Pages faulted in one hmm_range_fault. */
#define KMIRROR_FAULT_PAGES 16
/* How long the fault loop retries before it gives up with -EBUSY.
 * test_hmm gives up after HMM_RANGE_DEFAULT_TIMEOUT (a second); the lab
 * runs on shared, loaded machines, where a second of wall time can pass
 * with the faulting thread barely scheduled while reclaim invalidates the
 * whole address space (which this interval watches) again and again. */
#define KMIRROR_FAULT_TIMEOUT_MS (10 * HMM_RANGE_DEFAULT_TIMEOUT)

struct kmirror_device {
    unsigned long bugs;
    atomic_long_t stats[KMIRROR_STAT_COUNT];
};

struct kmirror {
    struct kmirror_device *mdevice;
    struct mmu_interval_notifier notifier;
    /* The device page table: pfn index -> struct page, tagged if writable. */
    struct xarray pt;
    /* Held by the invalidation while it updates pt, and by the fault path
     * from mmu_interval_read_retry to the end of the install. */
    struct mutex mutex;
};

static void count(struct kmirror_device *mdevice, enum kmirror_stat stat) { atomic_long_inc(&mdevice->stats[stat]); }

struct kmirror_device *kmirror_device_create(unsigned long bugs) {
    struct kmirror_device *mdevice = kzalloc(sizeof(*mdevice), GFP_KERNEL);

    if (!mdevice) return NULL;
    mdevice->bugs = bugs;
    return mdevice;
}

void kmirror_device_destroy(struct kmirror_device *mdevice) { kfree(mdevice); }

unsigned long kmirror_device_stat(struct kmirror_device *mdevice, enum kmirror_stat stat) {
    return (unsigned long)atomic_long_read(&mdevice->stats[stat]);
}

static bool kmirror_is_protection_change(const struct mmu_notifier_range *range) {
    return range->event == MMU_NOTIFY_PROTECTION_VMA || range->event == MMU_NOTIFY_PROTECTION_PAGE ||
           range->event == MMU_NOTIFY_SOFT_DIRTY;
}

static void kmirror_do_update(struct kmirror *mirror, const struct mmu_notifier_range *range) {
    unsigned long pfn;
    void *entry;

    lockdep_assert_held(&mirror->mutex);
    /* BUG (KMIRROR_BUG_KEEP_WRITE_TAG): "a protection change leaves the
     * pages where they are", so the entries stay, write tag and all. */
    if ((mirror->mdevice->bugs & KMIRROR_BUG_KEEP_WRITE_TAG) && kmirror_is_protection_change(range)) return;

    /* The page table holds no references: the notifier is what keeps its
     * pages valid, so dropping an entry is all there is to do. */
    xa_for_each_range(&mirror->pt, pfn, entry, range->start >> PAGE_SHIFT, (range->end - 1) >> PAGE_SHIFT)
        xa_erase(&mirror->pt, pfn);
}

static bool kmirror_interval_invalidate(struct mmu_interval_notifier *mni, const struct mmu_notifier_range *range,
                                        unsigned long cur_seq) {
    struct kmirror *mirror = container_of(mni, struct kmirror, notifier);
    struct kmirror_device *mdevice = mirror->mdevice;

    /* BUG (KMIRROR_BUG_MUTEX_IN_NONBLOCKABLE): mutex_lock whatever the range says. */
    if (mmu_notifier_range_blockable(range) || (mdevice->bugs & KMIRROR_BUG_MUTEX_IN_NONBLOCKABLE)) {
        mutex_lock(&mirror->mutex);
    } else if (!mutex_trylock(&mirror->mutex)) {
        count(mdevice, KMIRROR_STAT_REFUSED);
        return false;
    }

    /* BUG (KMIRROR_BUG_NO_SET_SEQ): without it, a fault that read the
     * primary before this invalidation passes its read_retry after it. */
    if (!(mdevice->bugs & KMIRROR_BUG_NO_SET_SEQ)) mmu_interval_set_seq(mni, cur_seq);
    kmirror_do_update(mirror, range);

    mutex_unlock(&mirror->mutex);
    count(mdevice, KMIRROR_STAT_INVALIDATIONS);
    return true;
}

static const struct mmu_interval_notifier_ops kmirror_min_ops = {
    .invalidate = kmirror_interval_invalidate,
};

int kmirror_open(struct kmirror_device *mdevice, struct kmirror **out) {
    struct kmirror *mirror;
    int ret;

    /* Mirror this process's address space. */
    mirror = kzalloc(sizeof(*mirror), GFP_KERNEL);
    if (!mirror) return -ENOMEM;
    mirror->mdevice = mdevice;
    mutex_init(&mirror->mutex);
    xa_init(&mirror->pt);

    ret = mmu_interval_notifier_insert(&mirror->notifier, current->mm, 0, ULONG_MAX & PAGE_MASK, &kmirror_min_ops);
    if (ret) {
        xa_destroy(&mirror->pt);
        kfree(mirror);
        return ret;
    }
    *out = mirror;
    return 0;
}

void kmirror_release(struct kmirror *mirror) {
    mmu_interval_notifier_remove(&mirror->notifier);
    xa_destroy(&mirror->pt);
    kfree(mirror);
}

static int kmirror_do_fault(struct kmirror *mirror, struct hmm_range *range) {
    unsigned long *pfns = range->hmm_pfns;
    unsigned long pfn;

    for (pfn = range->start >> PAGE_SHIFT; pfn < (range->end >> PAGE_SHIFT); pfn++, pfns++) {
        struct page *page;
        void *entry;

        /* We asked hmm_range_fault to fault every page in. */
        WARN_ON(*pfns & HMM_PFN_ERROR);
        WARN_ON(!(*pfns & HMM_PFN_VALID));

        page = hmm_pfn_to_page(*pfns);
        WARN_ON(!page);

        entry = page;
        if (*pfns & HMM_PFN_WRITE)
            entry = xa_tag_pointer(entry, KMIRROR_TAG_WRITE);
        else if (WARN_ON(range->default_flags & HMM_PFN_REQ_WRITE))
            return -EFAULT;
        entry = xa_store(&mirror->pt, pfn, entry, GFP_ATOMIC);
        if (xa_is_err(entry)) return xa_err(entry);
    }
    return 0;
}

static int kmirror_range_fault(struct kmirror *mirror, struct hmm_range *range) {
    struct mm_struct *mm = mirror->notifier.mm;
    unsigned long timeout = jiffies + msecs_to_jiffies(KMIRROR_FAULT_TIMEOUT_MS);
    int ret;

    while (true) {
        if (time_after(jiffies, timeout)) {
            ret = -EBUSY;
            goto out;
        }

        range->notifier_seq = mmu_interval_read_begin(range->notifier);
        mmap_read_lock(mm);
        ret = hmm_range_fault(range);
        mmap_read_unlock(mm);
        count(mirror->mdevice, KMIRROR_STAT_FAULTS);
        if (ret) {
            if (ret == -EBUSY) {
                count(mirror->mdevice, KMIRROR_STAT_RETRIES);
                continue;
            }
            goto out;
        }

        mutex_lock(&mirror->mutex);
        /* BUG (KMIRROR_BUG_NO_READ_RETRY): install whatever raced. */
        if (!(mirror->mdevice->bugs & KMIRROR_BUG_NO_READ_RETRY) &&
            mmu_interval_read_retry(range->notifier, range->notifier_seq)) {
            mutex_unlock(&mirror->mutex);
            count(mirror->mdevice, KMIRROR_STAT_RETRIES);
            continue;
        }
        break;
    }

    ret = kmirror_do_fault(mirror, range);
    mutex_unlock(&mirror->mutex);
out:
    return ret;
}

static int kmirror_fault(struct kmirror *mirror, unsigned long start, unsigned long end, bool write) {
    struct mm_struct *mm = mirror->notifier.mm;
    unsigned long addr;
    unsigned long pfns[KMIRROR_FAULT_PAGES];
    struct hmm_range range = {
        .notifier = &mirror->notifier,
        .hmm_pfns = pfns,
        .pfn_flags_mask = 0,
        .default_flags = HMM_PFN_REQ_FAULT | (write ? HMM_PFN_REQ_WRITE : 0),
        .dev_private_owner = mirror->mdevice,
    };
    int ret = 0;

    /* The mm is the mirrored process's: hold it while we fault. */
    if (!mmget_not_zero(mm)) return -EFAULT;

    for (addr = start; addr < end; addr = range.end) {
        range.start = addr;
        range.end = min(addr + (ARRAY_SIZE(pfns) << PAGE_SHIFT), end);

        ret = kmirror_range_fault(mirror, &range);
        if (ret) break;
    }

    mmput(mm);
    return ret;
}

static int kmirror_do_read(struct kmirror *mirror, unsigned long address, void *buffer, size_t length) {
    void *entry = xa_load(&mirror->pt, address >> PAGE_SHIFT);
    struct page *page = xa_untag_pointer(entry);
    char *from;

    if (!page) return -ENOENT;
    from = kmap(page);
    memcpy(buffer, from + offset_in_page(address), length);
    kunmap(page);
    count(mirror->mdevice, KMIRROR_STAT_READS);
    return 0;
}

int kmirror_read(struct kmirror *mirror, unsigned long address, void *buffer, size_t length) {
    int ret;

    if (offset_in_page(address) + length > PAGE_SIZE) return -EINVAL;
    while (1) {
        mutex_lock(&mirror->mutex);
        ret = kmirror_do_read(mirror, address, buffer, length);
        mutex_unlock(&mirror->mutex);
        if (ret != -ENOENT) break;

        ret = kmirror_fault(mirror, address & PAGE_MASK, (address & PAGE_MASK) + PAGE_SIZE, false);
        if (ret) break;
    }
    return ret;
}

static int kmirror_do_write(struct kmirror *mirror, unsigned long address, const void *buffer, size_t length) {
    void *entry = xa_load(&mirror->pt, address >> PAGE_SHIFT);
    struct page *page = xa_untag_pointer(entry);
    char *to;

    if (!page || xa_pointer_tag(entry) != KMIRROR_TAG_WRITE) return -ENOENT;
    to = kmap(page);
    memcpy(to + offset_in_page(address), buffer, length);
    kunmap(page);
    /* hmm_range_fault does not fault a page that is mapped writable but
     * clean: the write is ours to report, before the mutex lets an
     * invalidation (and a writeback or migration behind it) through. */
    set_page_dirty(page);
    count(mirror->mdevice, KMIRROR_STAT_WRITES);
    return 0;
}

int kmirror_write(struct kmirror *mirror, unsigned long address, const void *buffer, size_t length) {
    int ret;

    if (offset_in_page(address) + length > PAGE_SIZE) return -EINVAL;
    while (1) {
        mutex_lock(&mirror->mutex);
        ret = kmirror_do_write(mirror, address, buffer, length);
        mutex_unlock(&mirror->mutex);
        if (ret != -ENOENT) break;

        ret = kmirror_fault(mirror, address & PAGE_MASK, (address & PAGE_MASK) + PAGE_SIZE, true);
        if (ret) break;
    }
    return ret;
}
