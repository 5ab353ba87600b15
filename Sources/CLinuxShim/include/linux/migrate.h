/*
 * mmulab Linux shim: <linux/migrate.h>: migrate_vma, moving pages between
 * system memory and the device-private memory of memremap_pages
 * (<linux/memremap.h>), on the host's migrate_to_device and
 * migrate_to_host (ABI 1.1; 1.3 for the owner on the way home).
 *
 * The three calls, as a driver makes them (mmap_read_lock held, asserted):
 *   migrate_vma_setup(&args)  args.vma (from vma_lookup), start, end
 *       (page aligned, start < end), src and dst ((end - start) / PAGE_SIZE
 *       entries each), flags (MIGRATE_VMA_SELECT_SYSTEM: system pages to
 *       the device; MIGRATE_VMA_SELECT_DEVICE_PRIVATE: the pages of the
 *       memory whose owner is args.pgmap_owner, home). Fills src: for each
 *       page selected, migrate_pfn of its page | MIGRATE_PFN_MIGRATE (|
 *       MIGRATE_PFN_WRITE if mapped writable), 0 for the others (not
 *       mapped: the host moves only present pages); dst all 0; cpages the
 *       pages selected, npages the range's. Faults nothing in. -EINVAL for
 *       bad arguments, -EFAULT once the address space has exited.
 *   the driver sets dst[i] to a valid migrate_pfn for each page it moves
 *       (migrate_pfn_to_page(src[i]) is the source page, good to kmap).
 *   migrate_vma_pages(&args)  moves each page with src MIGRATE_PFN_MIGRATE
 *       and dst MIGRATE_PFN_VALID, one host call a page; clears
 *       MIGRATE_PFN_MIGRATE in src for each page that did not move (pinned,
 *       shared, not anonymous, the memory full, changed meanwhile), as
 *       Linux's does: read src afterwards to know which moved.
 *   migrate_vma_finalize(&args)  ends it (nothing is left to restore here).
 *
 * What differs from a kernel. The invalidation comes from the host's move,
 * in migrate_vma_pages, not in migrate_vma_setup: MMU_NOTIFY_MIGRATE with
 * range->owner the pagemap's owner, which the owning driver skips, as it
 * does in Linux. The destination page is the host's choice and the host
 * copies the data: dst[i] only says whether page i moves (any valid
 * migrate_pfn, e.g. migrate_pfn(0)); a driver's own allocation of device
 * pages (pfn_to_page) or of system pages for the way home (alloc_page),
 * and its copy, must be left out (they fail to link). Holes (pages never
 * touched) are not selected (Linux would allocate them on the device).
 * MIGRATE_VMA_SELECT_DEVICE_COHERENT selects nothing (the lab has no
 * coherent device memory); args.fault_page is ignored (there is no
 * migrate_to_ram callback to call it from).
 */
#ifndef MMULAB_LINUX_MIGRATE_H
#define MMULAB_LINUX_MIGRATE_H

#include <linux/memremap.h>
#include <linux/mm.h>

#define MIGRATE_PFN_VALID (1UL << 0)
#define MIGRATE_PFN_MIGRATE (1UL << 1)
#define MIGRATE_PFN_WRITE (1UL << 3)
#define MIGRATE_PFN_SHIFT 6

enum migrate_vma_direction {
    MIGRATE_VMA_SELECT_SYSTEM = 1 << 0,
    MIGRATE_VMA_SELECT_DEVICE_PRIVATE = 1 << 1,
    MIGRATE_VMA_SELECT_DEVICE_COHERENT = 1 << 2,
};

struct migrate_vma {
    struct vm_area_struct *vma;
    unsigned long *dst;
    unsigned long *src;
    unsigned long cpages;
    unsigned long npages;
    unsigned long start;
    unsigned long end;
    void *pgmap_owner;
    unsigned long flags;
    struct page *fault_page;
};

/* The page number bits of a src entry hold the shim's page handle (as an
 * hmm_pfns entry's do): decode it with migrate_pfn_to_page. */
static inline unsigned long migrate_pfn(unsigned long pfn) { return (pfn << MIGRATE_PFN_SHIFT) | MIGRATE_PFN_VALID; }
static inline struct page *migrate_pfn_to_page(unsigned long mpfn) {
    return (mpfn & MIGRATE_PFN_VALID) ? (struct page *)(mpfn >> MIGRATE_PFN_SHIFT) : NULL;
}

int migrate_vma_setup(struct migrate_vma *args);
void migrate_vma_pages(struct migrate_vma *migrate);
void migrate_vma_finalize(struct migrate_vma *migrate);

/* The mm's vma (see <linux/mm_types.h>: the whole address space), or NULL
 * past the address space's end. The caller holds mmap_read_lock. */
struct vm_area_struct *vma_lookup(struct mm_struct *mm, unsigned long addr);

#endif /* MMULAB_LINUX_MIGRATE_H */
