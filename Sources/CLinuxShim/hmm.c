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
 *
 * Entries whose request has no HMM_PFN_REQ_FAULT are read as the primary
 * maps them, faulting nothing (host->lookup_range, ABI 1.6): the whole
 * range is looked up once, then each run of entries that must be faulted
 * is faulted (host->fault_range), as Linux's walk faults only where a
 * fault is required. A page of a huge (PMD) mapping gets the order Linux
 * gives it, PMD_SHIFT - PAGE_SHIFT.
 */
#include <stddef.h>
#include <stdlib.h>

#include "internal.h"

#include <linux/hmm.h>

/* The request for entry i: Linux's (hmm_pfns[i] & pfn_flags_mask) | default_flags. */
static unsigned long request_of(const struct hmm_range *range, unsigned long i) {
    return (range->hmm_pfns[i] & range->pfn_flags_mask) | range->default_flags;
}

/* Whether the host has lookup_range (ABI 1.6). */
static bool host_looks_up(const mmulab_host *host) {
    return host->abi_minor >= 6 &&
           host->struct_size >= offsetof(mmulab_host, lookup_range) + sizeof host->lookup_range && host->lookup_range;
}

/* Faults each run of entries whose request has HMM_PFN_REQ_FAULT, one host
 * call per run with the same write request: 0 or an errno. */
static int fault_runs(struct mmulab_linux_device *device, struct hmm_range *range, uint64_t space, unsigned long count,
                      mmulab_pfn *pfns) {
    for (unsigned long first = 0; first < count;) {
        unsigned long request = request_of(range, first);
        if (!(request & HMM_PFN_REQ_FAULT)) {
            first++;
            continue;
        }
        bool write = request & HMM_PFN_REQ_WRITE;
        unsigned long end = first + 1;
        while (end < count && (request_of(range, end) & HMM_PFN_REQ_FAULT) &&
               (bool)(request_of(range, end) & HMM_PFN_REQ_WRITE) == write) {
            end++;
        }
        mmulab_error error = { 0 };
        mmulab_status status = device->host->fault_range(device->ctx, space, range->start + first * PAGE_SIZE,
                                                         (end - first) * PAGE_SIZE, write ? MMULAB_FAULT_WRITE : 0,
                                                         pfns + first, &error);
        if (status != MMULAB_OK) return shim_errno_from_status(status);
        first = end;
    }
    return 0;
}

int hmm_range_fault(struct hmm_range *range) {
    struct mmulab_linux_device *device = shim_require_device("hmm_range_fault");
    struct mmu_interval_notifier *subscription = range->notifier;
    if (WARN_ON(!subscription || !subscription->mm || !subscription->mmulab_interval)) return -EINVAL;
    struct mm_struct *mm = subscription->mm;
    mmap_assert_locked(mm);
    if (range->end <= range->start || (range->start & ~PAGE_MASK) || (range->end & ~PAGE_MASK)) return -EINVAL;
    unsigned long count = (range->end - range->start) >> PAGE_SHIFT;
    bool snapshot = false;
    for (unsigned long i = 0; i < count && !snapshot; i++) snapshot = !(request_of(range, i) & HMM_PFN_REQ_FAULT);
    if (snapshot && !host_looks_up(device->host)) {
        shim_log(device, MMULAB_LOG_ERROR,
                 "hmm_range_fault without HMM_PFN_REQ_FAULT (a snapshot without faulting) needs the host's "
                 "lookup_range (ABI 1.6); this host offers ABI 1.%u",
                 (unsigned)device->host->abi_minor);
        return -EOPNOTSUPP;
    }
    if (mmu_interval_check_retry(subscription, range->notifier_seq)) return -EBUSY;

    mmulab_pfn *pfns = calloc(count, sizeof *pfns);
    if (!pfns) return -ENOMEM;
    uint64_t space = shim_mm(mm)->address_space;
    /* The snapshot first, so that the faulted runs overwrite it with what
     * their fault found. */
    if (snapshot) {
        mmulab_error error = { 0 };
        mmulab_status status = device->host->lookup_range(device->ctx, space, range->start, count * PAGE_SIZE, pfns,
                                                          &error);
        if (status != MMULAB_OK) {
            free(pfns);
            return shim_errno_from_status(status);
        }
    }
    int ret = fault_runs(device, range, space, count, pfns);
    if (ret) {
        free(pfns);
        return ret;
    }
    /* A device-private page dev_private_owner does not claim: Linux faults
     * it home (the pagemap's migrate_to_ram) where a fault is asked for,
     * and reports nothing where none is. */
    for (unsigned long i = 0; i < count; i++) {
        if (!(pfns[i].flags & MMULAB_PFN_DEVICE_PRIVATE) || shim_claims_device_page(device, range->dev_private_owner))
            continue;
        if (!(request_of(range, i) & HMM_PFN_REQ_FAULT)) {
            pfns[i] = (mmulab_pfn){ .address = pfns[i].address, .flags = MMULAB_PFN_NONE };
            continue;
        }
        mmulab_error error = { 0 };
        uint64_t address = range->start + i * PAGE_SIZE;
        ret = shim_bring_home(device, space, address);
        mmulab_status status = ret ? MMULAB_ERR_FAULT
                                   : device->host->fault_range(device->ctx, space, address, PAGE_SIZE,
                                                               (request_of(range, i) & HMM_PFN_REQ_WRITE)
                                                                   ? MMULAB_FAULT_WRITE
                                                                   : 0,
                                                               &pfns[i], &error);
        /* Home and faulted again; a page that went back to the device
         * meanwhile is a race the caller's sequence catches: -EBUSY. */
        if (status != MMULAB_OK || (pfns[i].flags & MMULAB_PFN_DEVICE_PRIVATE)) {
            free(pfns);
            return status != MMULAB_OK ? shim_errno_from_status(status) : -EBUSY;
        }
    }
    for (unsigned long i = 0; i < count; i++) {
        /* Nothing mapped and no fault asked: Linux leaves the entry 0. */
        if (pfns[i].flags & MMULAB_PFN_NONE) {
            BUG_ON(request_of(range, i) & HMM_PFN_REQ_FAULT);
            range->hmm_pfns[i] = 0;
            continue;
        }
        struct page *page = shim_page_intern(device, space, &pfns[i], false);
        if (!page) {
            free(pfns);
            return -ENOMEM;
        }
        range->hmm_pfns[i] = (unsigned long)page | HMM_PFN_VALID |
                             ((pfns[i].flags & MMULAB_PFN_WRITABLE) ? HMM_PFN_WRITE : 0) |
                             ((pfns[i].flags & MMULAB_PFN_HUGE) ? hmm_pfn_flags_order(PMD_SHIFT - PAGE_SHIFT) : 0);
    }
    free(pfns);
    return 0;
}
