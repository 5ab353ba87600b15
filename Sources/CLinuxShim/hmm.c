/*
 * mmulab Linux shim: hmm_range_fault (<linux/hmm.h>) on host->fault_range.
 *
 * The sequence is checked where Linux's hmm_range_fault checks it: before
 * the walk (an invalidation that ran since mmu_interval_read_begin makes it
 * -EBUSY at once). Linux checks again only when its walk restarts after a
 * fault, and then reads the page tables after that check, so an
 * invalidation that comes while or after the last entries are read is
 * never seen by hmm_range_fault: it returns 0 and mmu_interval_read_retry,
 * under the driver's lock, is what catches it. host->fault_range faults and
 * reads in one call, so the shim does not check after it: the window the
 * driver's read_retry must close is the one Linux leaves open. (A fault
 * that itself invalidates the range, a COW break say, returns the new
 * pages; the moved sequence then costs a correct driver one retry, as
 * Linux's -EBUSY would.)
 */
#include <stdlib.h>

#include "internal.h"

#include <linux/hmm.h>

int hmm_range_fault(struct hmm_range *range) {
    struct mmulab_linux_device *device = shim_require_device("hmm_range_fault");
    struct mmu_interval_notifier *subscription = range->notifier;
    if (WARN_ON(!subscription || !subscription->mm || !subscription->mmulab_interval)) return -EINVAL;
    struct mm_struct *mm = subscription->mm;
    mmap_assert_locked(mm);
    if (range->end <= range->start || (range->start & ~PAGE_MASK) || (range->end & ~PAGE_MASK)) return -EINVAL;
    unsigned long count = (range->end - range->start) >> PAGE_SHIFT;
    for (unsigned long i = 0; i < count; i++) {
        unsigned long request = (range->hmm_pfns[i] & range->pfn_flags_mask) | range->default_flags;
        if (!(request & HMM_PFN_REQ_FAULT)) {
            shim_log(device, MMULAB_LOG_ERROR,
                     "hmm_range_fault without HMM_PFN_REQ_FAULT (a snapshot without faulting) is not provided: "
                     "the plugin ABI has no such service");
            return -EOPNOTSUPP;
        }
    }
    if (mmu_interval_check_retry(subscription, range->notifier_seq)) return -EBUSY;

    mmulab_pfn *pfns = calloc(count, sizeof *pfns);
    if (!pfns) return -ENOMEM;
    uint64_t space = shim_mm(mm)->address_space;
    /* One host call per run of pages with the same request. */
    for (unsigned long first = 0; first < count;) {
        bool write = ((range->hmm_pfns[first] & range->pfn_flags_mask) | range->default_flags) & HMM_PFN_REQ_WRITE;
        unsigned long end = first + 1;
        while (end < count &&
               (bool)(((range->hmm_pfns[end] & range->pfn_flags_mask) | range->default_flags) & HMM_PFN_REQ_WRITE) ==
                   write) {
            end++;
        }
        mmulab_error error = { 0 };
        mmulab_status status = device->host->fault_range(device->ctx, space, range->start + first * PAGE_SIZE,
                                                         (end - first) * PAGE_SIZE, write ? MMULAB_FAULT_WRITE : 0,
                                                         pfns + first, &error);
        if (status != MMULAB_OK) {
            free(pfns);
            return shim_errno_from_status(status);
        }
        first = end;
    }
    for (unsigned long i = 0; i < count; i++) {
        struct page *page = shim_page_intern(device, space, &pfns[i], false);
        if (!page) {
            free(pfns);
            return -ENOMEM;
        }
        range->hmm_pfns[i] = (unsigned long)page | HMM_PFN_VALID |
                             ((pfns[i].flags & MMULAB_PFN_WRITABLE) ? HMM_PFN_WRITE : 0);
    }
    free(pfns);
    return 0;
}
