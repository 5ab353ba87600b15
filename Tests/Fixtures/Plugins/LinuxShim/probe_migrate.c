/*
 * The Linux shim probe's device-private memory: memremap_pages, the
 * migrate_vma calls as a driver makes them (test_hmm's shape, without its
 * own device-page allocator and copy, which are the host's here), and
 * hmm_range_fault's dev_private_owner.
 */
#include <linux/err.h>
#include <linux/errno.h>
#include <linux/hmm.h>
#include <linux/kernel.h>
#include <linux/memremap.h>
#include <linux/migrate.h>
#include <linux/mm.h>
#include <linux/sched.h>

#include "probe.h"
#include "probe_state.h"

#define MIGRATE_MAX 64

static long migrate(struct probe *probe, struct probe_command *c, unsigned long flags, void *owner) {
    u64 *a = c->arguments;
    unsigned long src[MIGRATE_MAX], dst[MIGRATE_MAX], i;
    struct migrate_vma args = { 0 };
    struct mm_struct *mm = current->mm;
    int ret;

    if (a[2] == 0 || a[2] > MIGRATE_MAX) return -EINVAL;
    mmap_read_lock(mm);
    args.vma = vma_lookup(mm, a[1]);
    args.start = a[1];
    args.end = a[1] + a[2] * PAGE_SIZE;
    args.src = src;
    args.dst = dst;
    args.flags = flags;
    args.pgmap_owner = owner;
    ret = migrate_vma_setup(&args);
    if (ret) {
        mmap_read_unlock(mm);
        return ret;
    }
    a[0] = args.cpages;
    a[1] = a[2] = a[3] = 0;
    for (i = 0; i < args.npages; i++) {
        struct page *page = migrate_pfn_to_page(src[i]);
        if (!(src[i] & MIGRATE_PFN_MIGRATE)) continue;
        a[1] |= 1ULL << i;
        if (src[i] & MIGRATE_PFN_WRITE) a[3] |= 1ULL << i;
        WARN_ON(!page);
        /* The destination is the host's: any valid entry moves the page. */
        dst[i] = migrate_pfn(0);
    }
    migrate_vma_pages(&args);
    for (i = 0; i < args.npages; i++)
        if (src[i] & MIGRATE_PFN_MIGRATE) a[2] |= 1ULL << i;
    migrate_vma_finalize(&args);
    mmap_read_unlock(mm);
    return 0;
}

long probe_migrate(struct probe *probe, struct probe_command *c) {
    u64 *a = c->arguments;
    struct hmm_range range;
    unsigned long pfn;
    struct page *page;
    void *mapped;
    long ret;

    switch (a[0]) {
    case PROBE_MIGRATE_REMAP:
        probe->pgmap = (struct dev_pagemap){
            .type = MEMORY_DEVICE_PRIVATE,
            .owner = a[3] ? NULL : probe,
            .nr_range = 1,
            .range = { .start = 1UL << 40, .end = (1UL << 40) + a[2] * PAGE_SIZE - 1 },
        };
        mapped = memremap_pages(&probe->pgmap, 0);
        return IS_ERR(mapped) ? PTR_ERR(mapped) : 0;
    case PROBE_MIGRATE_TO_DEVICE: return migrate(probe, c, MIGRATE_VMA_SELECT_SYSTEM, probe);
    case PROBE_MIGRATE_TO_RAM: return migrate(probe, c, MIGRATE_VMA_SELECT_DEVICE_PRIVATE, a[3] ? NULL : probe);
    case PROBE_MIGRATE_UNMAP: memunmap_pages(&probe->pgmap); return 0;
    case PROBE_MIGRATE_HMM:
        range = (struct hmm_range){
            .notifier = &probe->notifier,
            .notifier_seq = mmu_interval_read_begin(&probe->notifier),
            .start = a[1],
            .end = a[1] + PAGE_SIZE,
            .hmm_pfns = &pfn,
            .default_flags = HMM_PFN_REQ_FAULT | HMM_PFN_REQ_WRITE,
            .dev_private_owner = a[3] ? NULL : probe,
        };
        mmap_read_lock(current->mm);
        ret = hmm_range_fault(&range);
        mmap_read_unlock(current->mm);
        if (ret) return ret;
        page = hmm_pfn_to_page(pfn);
        probe->slots[4] = page;
        a[0] = is_device_private_page(page);
        a[1] = page_pgmap(page) == &probe->pgmap;
        return 0;
    }
    return -EINVAL;
}
