/*
 * mmulab Linux shim: <linux/mm.h>.
 *
 * Pages (see <linux/mm_types.h>: a struct page pointer is a handle on one
 * translation): set_page_dirty tells the lab the device wrote the page
 * (host->set_dirty), mark_page_accessed that it used it
 * (host->mark_accessed). The folio of a page is the page (the lab maps
 * 4 KiB pages).
 *
 * Pinning (pin_user_pages and friends, FOLL_WRITE for write access) pins
 * through the host (host->pin): the frames stay until unpinned, and the
 * returned pages may be kmapped for as long as they are pinned. The pages
 * are those of current->mm (pin_user_pages, pin_user_pages_fast) or of the
 * mm given (pin_user_pages_remote). unpin_user_pages_dirty_lock with
 * make_dirty reports the device's writes as the pages go.
 *
 * References (get_page, put_page, folio_get, folio_put), as Linux's: a
 * page stays (not freed, not reused; reclaim and migration leave it where
 * it is) until the last put_page, and stays good to kmap meanwhile, even
 * once the primary has unmapped it. On a page the driver holds pinned (or
 * referenced) the reference is counted and kept by the pin, which the last
 * unpin_user_page then leaves taken until the last put_page. On a page
 * nothing holds (one from hmm_range_fault: take it under the notifier lock
 * after mmu_interval_read_retry, as in Linux) it is a reference on the
 * frame itself (the host's page_get, ABI 1.6), which never sleeps and
 * takes no lock of the primary's; a page freed since is the host's use
 * after free report. Refused and reported as a BUG finding naming
 * get_page, taking nothing: a device-private page (the host keeps device
 * memory itself), and any such page on a host older than 1.6 (its
 * put_page is then not reported again). put_page of a page without a
 * reference is a BUG finding too.
 *
 * Declared here and not provided, so a driver that reaches for them fails
 * to link (undefined symbol), never runs a stand-in:
 *   page_address, pfn_to_page   a page's memory is reached only through
 *                               kmap, and a bare pfn carries no translation;
 *   alloc_page(s), __free_page(s)  the lab holds pages only through the
 *                               primary's mappings (pin) and the device's
 *                               own memory; a driver's own system pages
 *                               are not modelled;
 *   get_user_pages(_remote)     use pin_user_pages (FOLL_PIN), which the lab
 *                               accounts.
 */
#ifndef MMULAB_LINUX_MM_H
#define MMULAB_LINUX_MM_H

#include <linux/err.h>
#include <linux/gfp.h>
#include <linux/kernel.h>
#include <linux/mm_types.h>
#include <linux/mmap_lock.h>
#include <linux/types.h>

#define PAGE_SHIFT 12
#define PAGE_SIZE (1UL << PAGE_SHIFT)
#define PAGE_MASK (~(PAGE_SIZE - 1))
#define PAGE_ALIGN(address) ALIGN((unsigned long)(address), PAGE_SIZE)
#define PAGE_ALIGNED(address) IS_ALIGNED((unsigned long)(address), PAGE_SIZE)
#define offset_in_page(p) ((unsigned long)(p) & ~PAGE_MASK)
#define PHYS_PFN(x) ((unsigned long)((x) >> PAGE_SHIFT))
/* A huge (PMD) mapping: 2 MiB, as on x86-64 (hmm_range_fault's map order
 * for a page of one is PMD_SHIFT - PAGE_SHIFT). */
#define PMD_SHIFT 21
#define PMD_SIZE (1UL << PMD_SHIFT)
#define PMD_MASK (~(PMD_SIZE - 1))

/* A fault, as a dev_pagemap's migrate_to_ram sees it (<linux/memremap.h>):
 * the vma (vma_lookup's), the faulting address (page aligned) and the
 * device-private page there. */
typedef unsigned int vm_fault_t;
#define VM_FAULT_OOM 0x000001u
#define VM_FAULT_SIGBUS 0x000002u
struct vm_area_struct;
struct vm_fault {
    struct vm_area_struct *vma;
    unsigned long address;
    unsigned int flags;
    struct page *page;
};

/* The frame number behind the page (for a device-private page, the
 * device page's number). */
unsigned long page_to_pfn(const struct page *page);
bool is_zone_device_page(const struct page *page);
bool is_device_private_page(const struct page *page);

/* The device wrote the page: the lab records it dirty, so reclaim writes it
 * back. Always answers true (Linux: whether it was newly dirtied; the host
 * does not say). set_page_dirty_lock takes the page lock first in Linux,
 * so it may sleep. */
bool set_page_dirty(struct page *page);
int set_page_dirty_lock(struct page *page);
void mark_page_accessed(struct page *page);

static inline struct folio *page_folio(struct page *page) { return (struct folio *)page; }
static inline struct page *mmulab_linux_folio_page(struct folio *folio, unsigned long n) {
    WARN_ON(n != 0); /* every folio here is one 4 KiB page */
    return (struct page *)folio;
}
#define folio_page(folio, n) mmulab_linux_folio_page((folio), (n))
static inline bool folio_mark_dirty(struct folio *folio) { return set_page_dirty((struct page *)folio); }
static inline void folio_mark_accessed(struct folio *folio) { mark_page_accessed((struct page *)folio); }
static inline unsigned long folio_pfn(struct folio *folio) { return page_to_pfn((struct page *)folio); }
static inline long folio_nr_pages(struct folio *folio) {
    (void)folio;
    return 1;
}

/* gup_flags */
#define FOLL_WRITE 0x01u
#define FOLL_FORCE 0x10u
#define FOLL_NOWAIT 0x20u
#define FOLL_LONGTERM 0x100u

/* Pins nr_pages pages of current->mm (of `mm`, for _remote) from the page
 * containing `start`; fills `pages`. Returns how many were pinned, as
 * Linux's gup does: from the first page on, fewer than asked when a page
 * part way is not mapped (or not writable, with FOLL_WRITE), the caller
 * owning those pins; a negative error only when the first page cannot be
 * pinned. The caller holds mmap_read_lock (pin_user_pages; _remote with
 * `locked` NULL or *locked set, asserted) or not (_fast, which may sleep;
 * _remote with *locked 0). _fast pins nothing for nr_pages <= 0. */
long pin_user_pages(unsigned long start, unsigned long nr_pages, unsigned int gup_flags, struct page **pages);
int pin_user_pages_fast(unsigned long start, int nr_pages, unsigned int gup_flags, struct page **pages);
long pin_user_pages_remote(struct mm_struct *mm, unsigned long start, unsigned long nr_pages, unsigned int gup_flags,
                           struct page **pages, int *locked);
void unpin_user_page(struct page *page);
void unpin_user_pages(struct page **pages, unsigned long npages);
void unpin_user_pages_dirty_lock(struct page **pages, unsigned long npages, bool make_dirty);

/* A reference on the page: keeps the frame, and the page good to kmap,
 * until the matching put_page, even past unpin_user_page or the primary's
 * unmapping it. Never sleeps (see above for what is refused). */
void get_page(struct page *page);
void put_page(struct page *page);
void folio_get(struct folio *folio);
void folio_put(struct folio *folio);

/* Not provided (see above): declared so that using them is a link error. */
void *page_address(const struct page *page);
struct page *pfn_to_page(unsigned long pfn);
struct page *alloc_pages(gfp_t gfp, unsigned int order);
struct page *alloc_page(gfp_t gfp);
void __free_pages(struct page *page, unsigned int order);
void __free_page(struct page *page);
long get_user_pages(unsigned long start, unsigned long nr_pages, unsigned int gup_flags, struct page **pages);
long get_user_pages_remote(struct mm_struct *mm, unsigned long start, unsigned long nr_pages, unsigned int gup_flags,
                           struct page **pages, int *locked);

#endif /* MMULAB_LINUX_MM_H */
