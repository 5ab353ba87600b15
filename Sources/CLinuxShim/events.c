/*
 * mmulab Linux shim: a lab invalidation as Linux's struct
 * mmu_notifier_range (the mapping is the README's table, "Event reasons
 * and Linux's enum mmu_notifier_event").
 */
#include "internal.h"

static enum mmu_notifier_event event_of(const mmulab_range *range) {
    switch (range->event) {
    case MMULAB_EVENT_MUNMAP:
    case MMULAB_EVENT_MREMAP:
    case MMULAB_EVENT_OOM_REAP: return MMU_NOTIFY_UNMAP;
    case MMULAB_EVENT_MPROTECT: return MMU_NOTIFY_PROTECTION_VMA;
    case MMULAB_EVENT_WRITE_PROTECT: return MMU_NOTIFY_PROTECTION_PAGE;
    case MMULAB_EVENT_SOFT_DIRTY: return MMU_NOTIFY_SOFT_DIRTY;
    case MMULAB_EVENT_EXIT: return MMU_NOTIFY_RELEASE;
    case MMULAB_EVENT_EXCLUSIVE: return MMU_NOTIFY_EXCLUSIVE;
    /* A device's migration names its owner; ordinary page migration is a
     * CLEAR in Linux (try_to_migrate_one). */
    case MMULAB_EVENT_MIGRATE: return (range->flags & MMULAB_RANGE_HAS_OWNER) ? MMU_NOTIFY_MIGRATE : MMU_NOTIFY_CLEAR;
    /* DONTNEED, MADV_FREE, a huge page's split or collapse (ABI 1.5),
     * reclaim, KSM, COW break, and any reason a newer host adds: CLEAR, as
     * Linux sends for each of these; it tells the driver only that the
     * entries go, which is always true. */
    default: return MMU_NOTIFY_CLEAR;
    }
}

void shim_range_from_lab(struct mmu_notifier_range *out, struct mm_struct *mm, const mmulab_range *range) {
    *out = (struct mmu_notifier_range){
        .mm = mm,
        .start = (unsigned long)range->start,
        .end = (unsigned long)range->end,
        .flags = (range->flags & MMULAB_RANGE_BLOCKABLE) ? MMU_NOTIFIER_RANGE_BLOCKABLE : 0,
        .event = event_of(range),
        .owner = (range->flags & MMULAB_RANGE_HAS_OWNER) ? (void *)(uintptr_t)range->owner : NULL,
    };
}
