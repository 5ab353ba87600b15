/*
 * mmulab Linux shim: <linux/memremap.h>: device-private memory as a
 * struct dev_pagemap, on the host's device memory (ABI 1.1).
 *
 * memremap_pages(pgmap, nid) of a MEMORY_DEVICE_PRIVATE pagemap with an
 * owner and one range makes the instance's device memory: as many pages
 * as the range spans, named by `owner` (the host's owner cookie is the
 * pointer), so a migration into it announces the owner (range->owner in
 * the invalidation, MMU_NOTIFY_MIGRATE) and hmm_range_fault with that
 * dev_private_owner reports its pages as device-private. One pagemap per
 * device instance (the host's rule: one owner per instance); a second is
 * -EBUSY. memunmap_pages brings every page still in it home (the host's
 * device_memory_evict); the memory itself stays the instance's until it
 * is destroyed, and a later memremap_pages with the same owner uses it
 * again (as large as the first call made it). Returns the range's start as a pointer, or
 * ERR_PTR(-EINVAL) for another type, no owner, or not one page-aligned
 * range; -ENOMEM when the host has no room.
 *
 * What differs from a kernel: the device memory's struct pages are not the
 * driver's. The host picks the device page a migration fills and copies
 * the data itself (see <linux/migrate.h>), so a driver's allocator of
 * device pages (pfn_to_page over the range) and its copy do not run here:
 * pfn_to_page is not provided. A device page's handle is a translation as
 * any page's (is_device_private_page, page_pgmap, kmap). ops->page_free is
 * never called.
 *
 * ops->migrate_to_ram(vmf) is called, as in Linux, when the CPU (or
 * hmm_range_fault with another dev_private_owner) reaches a page of the
 * memory: vmf->vma, vmf->address and vmf->page (the device page), with
 * mmap_read_lock held. Typically it migrates the page home with
 * migrate_vma (MIGRATE_VMA_SELECT_DEVICE_PRIVATE, pgmap_owner the owner,
 * fault_page vmf->page) and returns 0; VM_FAULT_SIGBUS on failure. The
 * glue file wires it (ABI 1.6: the descriptor's migrate_to_ram calls
 * mmulab_linux_migrate_to_ram). Whatever it leaves in device memory the
 * host brings home itself, with an invalidation that carries no owner (the
 * driver hears MMU_NOTIFY_CLEAR and drops its entry); so does a CPU access
 * on a host older than 1.6.
 */
#ifndef MMULAB_LINUX_MEMREMAP_H
#define MMULAB_LINUX_MEMREMAP_H

#include <linux/mm.h>
#include <linux/types.h>


enum memory_type {
    MEMORY_DEVICE_PRIVATE = 1,
    MEMORY_DEVICE_COHERENT,
    MEMORY_DEVICE_FS_DAX,
    MEMORY_DEVICE_GENERIC,
    MEMORY_DEVICE_PCI_P2PDMA,
};

/* [start, end], end inclusive, as Linux's. */
struct range {
    u64 start;
    u64 end;
};

static inline u64 range_len(const struct range *range) { return range->end - range->start + 1; }

struct dev_pagemap_ops {
    void (*page_free)(struct page *page);          /* never called here (see above) */
    vm_fault_t (*migrate_to_ram)(struct vm_fault *vmf);
};

struct dev_pagemap {
    enum memory_type type;
    const struct dev_pagemap_ops *ops;
    void *owner;
    int nr_range;
    struct range range;
};

void *memremap_pages(struct dev_pagemap *pgmap, int nid);
void memunmap_pages(struct dev_pagemap *pgmap);
/* The pagemap of a device-private page of this device (Linux 6.15's
 * page_pgmap), NULL for any other page. */
struct dev_pagemap *page_pgmap(const struct page *page);

#endif /* MMULAB_LINUX_MEMREMAP_H */
