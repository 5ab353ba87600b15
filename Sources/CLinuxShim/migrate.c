/*
 * mmulab Linux shim: device-private memory and migration
 * (<linux/memremap.h>, <linux/migrate.h>) on the host's device memory:
 * device_memory_create, migrate_to_device, migrate_to_host,
 * device_memory_evict. See the headers for what differs from a kernel.
 */
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

#include <linux/err.h>
#include <linux/memremap.h>
#include <linux/migrate.h>
#include <linux/sched.h>
#include <linux/sched/mm.h>

/* The address space's end (the host's addressLimit): 2^44. */
#define SHIM_ADDRESS_LIMIT (1UL << 44)

struct vm_area_struct *vma_lookup(struct mm_struct *mm, unsigned long addr) {
    if (WARN_ON(!mm)) return NULL;
    mmap_assert_locked(mm);
    if (addr >= SHIM_ADDRESS_LIMIT) return NULL;
    struct mmulab_linux_mm *m = shim_mm(mm);
    m->vma = (struct vm_area_struct){ .vm_mm = mm, .vm_start = 0, .vm_end = SHIM_ADDRESS_LIMIT };
    return &m->vma;
}

void *memremap_pages(struct dev_pagemap *pgmap, int nid) {
    (void)nid;
    struct mmulab_linux_device *device = shim_require_device("memremap_pages");
    shim_might_sleep(device, "memremap_pages()", "migrate.c", __LINE__);
    if (WARN_ON(!pgmap)) return ERR_PTR(-EINVAL);
    if (pgmap->type != MEMORY_DEVICE_PRIVATE || !pgmap->owner || pgmap->nr_range != 1 ||
        pgmap->range.end < pgmap->range.start || (pgmap->range.start & ~PAGE_MASK) ||
        ((pgmap->range.end + 1) & ~PAGE_MASK)) {
        shim_log(device, MMULAB_LOG_ERROR,
                 "memremap_pages: only MEMORY_DEVICE_PRIVATE with an owner and one page-aligned range is provided");
        return ERR_PTR(-EINVAL);
    }
    uint64_t pages = range_len(&pgmap->range) >> PAGE_SHIFT;
    uint64_t owner = (uint64_t)(uintptr_t)pgmap->owner;
    /* device->pgmap, memory and memory_owner change under the device lock;
     * the pagemap is claimed first, so a racing second call is busy. */
    device->host->lock(device->lock);
    bool busy = device->pgmap != NULL;
    mmulab_device_memory *memory = device->memory;
    bool foreign = memory && device->memory_owner != owner;
    if (!busy && !foreign) device->pgmap = pgmap;
    device->host->unlock(device->lock);
    if (busy) return ERR_PTR(-EBUSY);
    if (foreign) {
        /* The host keeps the first memory, under its owner, until destroy. */
        shim_log(device, MMULAB_LOG_ERROR, "memremap_pages: the device memory exists with another owner");
        return ERR_PTR(-EBUSY);
    }
    if (!memory) {
        mmulab_error error = { 0 };
        mmulab_status status =
            device->host->device_memory_create(device->ctx, device->name, pages, owner, &memory, &error);
        device->host->lock(device->lock);
        if (status == MMULAB_OK) {
            device->memory = memory;
            device->memory_owner = owner;
        } else {
            device->pgmap = NULL;
        }
        device->host->unlock(device->lock);
        if (status != MMULAB_OK) return ERR_PTR(shim_errno_from_status(status));
    }
    return (void *)(uintptr_t)pgmap->range.start;
}

void memunmap_pages(struct dev_pagemap *pgmap) {
    struct mmulab_linux_device *device = shim_require_device("memunmap_pages");
    shim_might_sleep(device, "memunmap_pages()", "migrate.c", __LINE__);
    if (WARN_ON(!pgmap || pgmap != device->pgmap)) return;
    device->host->device_memory_evict(device->ctx, device->memory, UINT64_MAX);
    device->host->lock(device->lock);
    device->pgmap = NULL;
    device->host->unlock(device->lock);
}

struct dev_pagemap *page_pgmap(const struct page *page) {
    struct mmulab_linux_device *device = shim_page_device(page);
    return device && is_device_private_page(page) ? device->pgmap : NULL;
}

/* The owner cookie of the memory memremap_pages made, if `owner` names it. */
static bool owns(const struct mmulab_linux_device *device, const void *owner) {
    return device->pgmap && device->memory && owner && (uint64_t)(uintptr_t)owner == device->memory_owner;
}

int migrate_vma_setup(struct migrate_vma *args) {
    struct mmulab_linux_device *device = shim_require_device("migrate_vma_setup");
    if (WARN_ON(!args)) return -EINVAL;
    struct vm_area_struct *vma = args->vma;
    if (!vma || !vma->vm_mm || !args->src || !args->dst) return -EINVAL;
    mmap_assert_locked(vma->vm_mm);
    unsigned long start = args->start, end = args->end;
    if ((start & ~PAGE_MASK) || (end & ~PAGE_MASK) || start >= end || start < vma->vm_start || end > vma->vm_end)
        return -EINVAL;
    if (!(args->flags & (MIGRATE_VMA_SELECT_SYSTEM | MIGRATE_VMA_SELECT_DEVICE_PRIVATE |
                         MIGRATE_VMA_SELECT_DEVICE_COHERENT)))
        return -EINVAL;
    unsigned long npages = (end - start) >> PAGE_SHIFT;
    args->npages = npages;
    args->cpages = 0;
    memset(args->src, 0, npages * sizeof *args->src);
    memset(args->dst, 0, npages * sizeof *args->dst);
    bool device_pages = (args->flags & MIGRATE_VMA_SELECT_DEVICE_PRIVATE) && owns(device, args->pgmap_owner);
    bool system_pages = args->flags & MIGRATE_VMA_SELECT_SYSTEM;
    if (system_pages && !device->memory) return 0; /* nowhere to go: nothing selected */
    if (!system_pages && !device_pages) return 0;
    mmulab_pfn *pfns = calloc(npages, sizeof *pfns);
    if (!pfns) return -ENOMEM;
    uint64_t space = shim_mm(vma->vm_mm)->address_space;
    mmulab_error error = { 0 };
    /* What is there now (ABI 1.6), faulting nothing in. */
    mmulab_status status = device->host->struct_size >= offsetof(mmulab_host, lookup_range) + sizeof(void *) &&
                                   device->host->abi_minor >= 6
                               ? device->host->lookup_range(device->ctx, space, start, npages * PAGE_SIZE, pfns, &error)
                               : MMULAB_ERR_NOT_SUPPORTED;
    if (status != MMULAB_OK) {
        free(pfns);
        if (status == MMULAB_ERR_NOT_SUPPORTED)
            shim_log(device, MMULAB_LOG_ERROR, "migrate_vma_setup needs the host's lookup_range (ABI 1.6)");
        return shim_errno_from_status(status);
    }
    for (unsigned long i = 0; i < npages; i++) {
        uint32_t flags = pfns[i].flags;
        if (flags & MMULAB_PFN_NONE) continue;
        bool private = flags & MMULAB_PFN_DEVICE_PRIVATE;
        if (private ? !device_pages : !system_pages) continue;
        struct page *page = shim_page_intern(device, space, &pfns[i], false);
        if (!page) {
            free(pfns);
            return -ENOMEM;
        }
        /* The handle must survive the shift (user-space pointers do). */
        BUG_ON(((uintptr_t)page << MIGRATE_PFN_SHIFT) >> MIGRATE_PFN_SHIFT != (uintptr_t)page);
        args->src[i] = migrate_pfn((unsigned long)page) | MIGRATE_PFN_MIGRATE |
                       ((flags & MMULAB_PFN_WRITABLE) ? MIGRATE_PFN_WRITE : 0);
        args->cpages++;
    }
    free(pfns);
    return 0;
}

void migrate_vma_pages(struct migrate_vma *migrate) {
    struct mmulab_linux_device *device = shim_require_device("migrate_vma_pages");
    if (WARN_ON(!migrate || !migrate->vma || !migrate->src || !migrate->dst)) return;
    shim_might_sleep(device, "migrate_vma_pages()", "migrate.c", __LINE__);
    uint64_t space = shim_mm(migrate->vma->vm_mm)->address_space;
    for (unsigned long i = 0; i < migrate->npages; i++) {
        unsigned long src = migrate->src[i];
        if (!(src & MIGRATE_PFN_MIGRATE)) continue;
        if (!(migrate->dst[i] & MIGRATE_PFN_VALID) || !device->memory) {
            migrate->src[i] &= ~MIGRATE_PFN_MIGRATE; /* the driver did not give it a page */
            continue;
        }
        struct page *page = migrate_pfn_to_page(src);
        bool home = page && is_device_private_page(page);
        uint64_t address = migrate->start + i * PAGE_SIZE, moved = 0;
        mmulab_error error = { 0 };
        /* The host's move invalidates the page with the memory's owner
         * (the driver skips its own, as in Linux) and copies it. */
        mmulab_status status =
            home ? device->host->migrate_to_host(device->ctx, device->memory, space, address, PAGE_SIZE, &moved, &error)
                 : device->host->migrate_to_device(device->ctx, device->memory, space, address, PAGE_SIZE, &moved,
                                                   &error);
        if (status != MMULAB_OK || moved == 0) migrate->src[i] &= ~MIGRATE_PFN_MIGRATE;
    }
}

void migrate_vma_finalize(struct migrate_vma *migrate) {
    /* The host's moves were complete in migrate_vma_pages: nothing to restore or unlock. */
    (void)shim_require_device("migrate_vma_finalize");
    WARN_ON(!migrate);
}

/* hmm_range_fault's dev_private_owner (hmm.c): a device-private page of
 * memremap_pages's memory not claimed by `owner` goes home first, as
 * Linux's hmm_range_fault faults it (the pagemap's migrate_to_ram). */
bool shim_claims_device_page(struct mmulab_linux_device *device, const void *owner) {
    return !device->pgmap || owns(device, owner);
}

/* The device page at `address` of `mm` (a handle), or NULL if none is there. */
static struct page *device_page_at(struct mmulab_linux_device *device, uint64_t space, unsigned long address) {
    mmulab_pfn pfn = { 0 };
    mmulab_error error = { 0 };
    if (device->host->lookup_range(device->ctx, space, address, PAGE_SIZE, &pfn, &error) != MMULAB_OK ||
        !(pfn.flags & MMULAB_PFN_DEVICE_PRIVATE))
        return NULL;
    return shim_page_intern(device, space, &pfn, false);
}

/* Calls the pagemap's migrate_to_ram for the page at `address` (scope
 * entered, mmap_read_lock held): its answer, or -EOPNOTSUPP without one
 * (or on a host older than 1.6, whose lookup_range it needs). */
static int call_migrate_to_ram(struct mmulab_linux_device *device, struct mm_struct *mm, unsigned long address) {
    struct dev_pagemap *pgmap = device->pgmap;
    if (!pgmap || !pgmap->ops || !pgmap->ops->migrate_to_ram || device->host->abi_minor < 6) return -EOPNOTSUPP;
    uint64_t space = shim_mm(mm)->address_space;
    struct page *page = device_page_at(device, space, address & PAGE_MASK);
    if (!page) return 0; /* home already */
    struct vm_fault vmf = { .vma = vma_lookup(mm, address), .address = address & PAGE_MASK, .page = page };
    vm_fault_t ret = pgmap->ops->migrate_to_ram(&vmf);
    return ret ? -EFAULT : 0;
}

int shim_bring_home(struct mmulab_linux_device *device, uint64_t space, uint64_t address) {
    /* As Linux's fault path: the pagemap's migrate_to_ram first (the
     * caller holds mmap_read_lock), then the host for what is left. */
    struct mmulab_linux_mm *m = shim_xa_load_locked_mm(device, space);
    if (m) call_migrate_to_ram(device, &m->mm, (unsigned long)address);
    uint64_t moved = 0;
    mmulab_error error = { 0 };
    mmulab_status status =
        device->host->migrate_to_host(device->ctx, device->memory, space, address & PAGE_MASK, PAGE_SIZE, &moved, &error);
    return shim_errno_from_status(status);
}

mmulab_status mmulab_linux_migrate_to_ram(struct mmulab_linux_device *device, uint64_t address_space, uint64_t address,
                                          mmulab_error *error) {
    if (!device) return mmulab_fail(error, MMULAB_ERR_INVALID, "migrate_to_ram: no device");
    if (!device->pgmap || !device->pgmap->ops || !device->pgmap->ops->migrate_to_ram)
        return mmulab_fail(error, MMULAB_ERR_NOT_SUPPORTED, "no dev_pagemap with a migrate_to_ram");
    struct mm_struct *mm = mmulab_linux_mm_get(device, address_space, error);
    if (!mm) return error ? error->status : MMULAB_ERR_NOT_SUPPORTED;
    mmulab_linux_scope scope = mmulab_linux_enter(device, mm);
    /* Linux's fault path holds mmap_read_lock around migrate_to_ram. */
    mmap_read_lock(mm);
    int ret = call_migrate_to_ram(device, mm, (unsigned long)address);
    mmap_read_unlock(mm);
    mmdrop(mm);
    mmulab_linux_leave(scope);
    return mmulab_linux_fail(error, ret, "migrate_to_ram");
}
