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

/* The pagemap's migrate_to_ram, as test_hmm's dmirror_devmem_fault: the
 * faulting page home with migrate_vma (its device page is the host's to
 * copy here). */
static vm_fault_t probe_migrate_to_ram(struct vm_fault *vmf) {
    struct dev_pagemap *pgmap = page_pgmap(vmf->page);
    struct probe *probe;
    unsigned long src = 0, dst = 0;
    struct migrate_vma args = { 0 };

    if (WARN_ON(!pgmap)) return VM_FAULT_SIGBUS;
    probe = container_of(pgmap, struct probe, pgmap);
    probe->ram_fault_address = vmf->address;
    probe->ram_fault_page_ok = is_device_private_page(vmf->page);
    atomic_inc(&probe->ram_faults);
    args.vma = vmf->vma;
    args.start = vmf->address;
    args.end = vmf->address + PAGE_SIZE;
    args.src = &src;
    args.dst = &dst;
    args.pgmap_owner = probe;
    args.flags = MIGRATE_VMA_SELECT_DEVICE_PRIVATE;
    args.fault_page = vmf->page;
    if (migrate_vma_setup(&args)) return VM_FAULT_SIGBUS;
    if (src & MIGRATE_PFN_MIGRATE) dst = migrate_pfn(0);
    migrate_vma_pages(&args);
    migrate_vma_finalize(&args);
    return (src & MIGRATE_PFN_MIGRATE) ? 0 : VM_FAULT_SIGBUS;
}

static vm_fault_t probe_failing_migrate_to_ram(struct vm_fault *vmf) {
    struct probe *probe = container_of(page_pgmap(vmf->page), struct probe, pgmap);
    atomic_inc(&probe->ram_faults);
    return VM_FAULT_SIGBUS;
}

static const struct dev_pagemap_ops probe_pagemap_ops = { .migrate_to_ram = probe_migrate_to_ram };
static const struct dev_pagemap_ops probe_failing_pagemap_ops = { .migrate_to_ram = probe_failing_migrate_to_ram };
static const struct dev_pagemap_ops probe_no_pagemap_ops = { 0 };

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
            .owner = a[3] == 1 ? NULL : probe,
            .ops = a[3] == 2 ? &probe_failing_pagemap_ops : a[3] == 3 ? &probe_no_pagemap_ops : &probe_pagemap_ops,
            .nr_range = 1,
            .range = { .start = 1UL << 40, .end = (1UL << 40) + a[2] * PAGE_SIZE - 1 },
        };
        mapped = memremap_pages(&probe->pgmap, 0);
        return IS_ERR(mapped) ? PTR_ERR(mapped) : 0;
    case PROBE_MIGRATE_TO_DEVICE: return migrate(probe, c, MIGRATE_VMA_SELECT_SYSTEM, probe);
    case PROBE_MIGRATE_TO_RAM: return migrate(probe, c, MIGRATE_VMA_SELECT_DEVICE_PRIVATE, a[3] ? NULL : probe);
    case PROBE_MIGRATE_UNMAP: memunmap_pages(&probe->pgmap); return 0;
    case PROBE_MIGRATE_RAM_FAULTS:
        a[0] = probe->ram_fault_address;
        a[1] = probe->ram_fault_page_ok;
        return atomic_read(&probe->ram_faults);
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
