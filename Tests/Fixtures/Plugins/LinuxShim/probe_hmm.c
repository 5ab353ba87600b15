/*
 * The Linux shim probe's hmm_range_fault over a range: faulting, snapshot
 * (no HMM_PFN_REQ_FAULT) and mixed requests, and the map order of huge
 * pages, as a driver decodes the entries.
 */
#include <linux/errno.h>
#include <linux/hmm.h>
#include <linux/kernel.h>
#include <linux/mm.h>
#include <linux/sched.h>
#include <linux/slab.h>
#include <linux/string.h>
#include <linux/rmap.h>
#include <linux/err.h>
#include <linux/mutex.h>

#include "probe.h"
#include "probe_state.h"

long probe_hmm_range(struct probe *probe, struct probe_command *c) {
    u64 *a = c->arguments;
    unsigned long pages = a[1], flags = a[2], i;
    unsigned long *pfns;
    struct hmm_range range;
    u64 frame = 0;
    long ret;

    if (pages == 0 || pages > 512) return -EINVAL;
    pfns = kvcalloc(pages, sizeof(*pfns), GFP_KERNEL);
    if (!pfns) return -ENOMEM;
    range = (struct hmm_range){
        .notifier = &probe->notifier,
        .notifier_seq = a[3],
        .start = a[0],
        .end = a[0] + pages * PAGE_SIZE,
        .hmm_pfns = pfns,
    };
    if (flags & PROBE_HMM_FAULT_ALL) range.default_flags = HMM_PFN_REQ_FAULT;
    if (flags & PROBE_HMM_WRITE) range.default_flags |= HMM_PFN_REQ_WRITE;
    if (flags & PROBE_HMM_FAULT_ODD) {
        range.pfn_flags_mask = ~0UL;
        for (i = 1; i < pages; i += 2) pfns[i] = HMM_PFN_REQ_FAULT;
    }
    if (flags & PROBE_HMM_STALE_INPUT) {
        for (i = 0; i < pages; i++) pfns[i] = HMM_PFN_ERROR | 0x1000;
    }
    mmap_read_lock(current->mm);
    ret = hmm_range_fault(&range);
    mmap_read_unlock(current->mm);
    if (ret == 0) {
        a[0] = a[1] = a[2] = a[3] = 0;
        for (i = 0; i < pages; i++) {
            if (!(pfns[i] & HMM_PFN_VALID)) {
                WARN_ON(pfns[i] != 0); /* Linux leaves an entry it did not fill 0 */
                continue;
            }
            if (i < 64) a[0] |= 1ULL << i;
            if (i < 64 && (pfns[i] & HMM_PFN_WRITE)) a[1] |= 1ULL << i;
            if (hmm_pfn_to_map_order(pfns[i]) == PMD_SHIFT - PAGE_SHIFT) a[2]++;
            a[3]++;
        }
        if (pfns[0] & HMM_PFN_VALID) {
            probe->slots[6] = hmm_pfn_to_page(pfns[0]);
            frame = page_to_pfn(probe->slots[6]);
        }
        memcpy(c->bytes, &frame, sizeof(frame));
    }
    kvfree(pfns);
    return ret;
}

/* make_device_exclusive as test_hmm's atomic path calls it: under
 * mmap_read_lock, then (in a driver) the entry installed under the
 * notifier lock, then folio_unlock and folio_put. */
long probe_exclusive(struct probe *probe, struct probe_command *c) {
    u64 *a = c->arguments;
    struct folio *folio = NULL;
    struct page *page;
    long ret = 0;

    switch (a[0]) {
    case PROBE_EXCLUSIVE_MAKE:
        mmap_read_lock(current->mm);
        page = make_device_exclusive(current->mm, a[1], a[2] ? (void *)probe : NULL, &folio);
        mmap_read_unlock(current->mm);
        if (IS_ERR(page)) return PTR_ERR(page);
        WARN_ON(page_folio(page) != folio);
        probe->slots[5] = page;
        probe->exclusive = folio;
        return 0;
    case PROBE_EXCLUSIVE_RELEASE:
        if (!probe->exclusive) return -ENOENT;
        folio_unlock(probe->exclusive);
        folio_put(probe->exclusive);
        probe->exclusive = NULL;
        return 0;
    case PROBE_EXCLUSIVE_UNLOCK:
        if (!probe->exclusive) return -ENOENT;
        folio_unlock(probe->exclusive);
        return 0;
    case PROBE_EXCLUSIVE_OWNER:
        mutex_lock(&probe->mutex);
        ret = probe->last_owner == probe ? 1 : probe->last_owner ? 2 : 0;
        mutex_unlock(&probe->mutex);
        return ret;
    }
    return -EINVAL;
}
