/*
 * mmulab Linux shim: <linux/highmem.h>.
 *
 * kmap(page) / kmap_local_page(page) return a page-sized buffer standing
 * for the page's memory: mapping it reads the page through the lab's
 * checked DMA (host->dma_read with the page's translation), and unmapping
 * it writes back, again as checked DMA (host->dma_write), if anything in
 * it changed. So a page whose translation is stale (the driver kept it
 * past the invalidation that should have dropped it) or whose frame was
 * freed is found at the access, with the page and the event trail that
 * led there; a write through a page the primary gave read-only, or mapped
 * read-only now, is found at the kunmap. Only the first bytes of a page
 * carry data in the lab (its payload); the rest of the buffer reads as
 * zeroes. Write only what you mean to write: the write-back copies the
 * whole payload back when anything changed.
 *
 * A thread may hold up to 16 mappings at once. kunmap_local must unmap
 * the most recent kmap_local_page first (the kernel's stack rule: breaking
 * it is reported). kmap may sleep (Linux's may, for highmem: might_sleep);
 * kmap_local_page does not. The page must not be written to the device
 * after it is unmapped: the write-back happens at kunmap. Report the
 * write with set_page_dirty before you let go of the lock your
 * invalidation callback takes.
 *
 * kmap_atomic is not provided (link error): it is deprecated in Linux, and
 * its disabling of preemption has no stand-in here; use kmap_local_page.
 */
#ifndef MMULAB_LINUX_HIGHMEM_H
#define MMULAB_LINUX_HIGHMEM_H

#include <linux/mm.h>
#include <linux/string.h>
#include <linux/types.h>

void *mmulab_linux_kmap(struct page *page, bool local, const char *file, int line);
void mmulab_linux_kunmap(struct page *page, const char *file, int line);
void mmulab_linux_kunmap_local(const void *address, const char *file, int line);

#define kmap(page) mmulab_linux_kmap((page), false, MMULAB_LINUX_FILE, __LINE__)
#define kunmap(page) mmulab_linux_kunmap((page), MMULAB_LINUX_FILE, __LINE__)
#define kmap_local_page(page) mmulab_linux_kmap((page), true, MMULAB_LINUX_FILE, __LINE__)
#define kmap_local_folio(folio, offset)                                                                                \
    ((char *)mmulab_linux_kmap((struct page *)(folio), true, MMULAB_LINUX_FILE, __LINE__) + (offset))
#define kunmap_local(address) mmulab_linux_kunmap_local((address), MMULAB_LINUX_FILE, __LINE__)

/* The helpers below are kmap_local_page, a copy, kunmap_local: the copy
 * is read by a checked DMA read and, if it changed the page, written back
 * by a checked DMA write. A range past the page's end is Linux's
 * VM_BUG_ON (reported) and copies nothing; a page the shim refused to map
 * (reported at the kmap) copies nothing either. */
static inline void memcpy_from_page(char *to, struct page *page, size_t offset, size_t length) {
    char *from = (char *)kmap_local_page(page);
    if (!from) return;
    VM_BUG_ON(offset + length > PAGE_SIZE);
    if (offset + length <= PAGE_SIZE) memcpy(to, from + offset, length);
    kunmap_local(from);
}

static inline void memcpy_to_page(struct page *page, size_t offset, const char *from, size_t length) {
    char *to = (char *)kmap_local_page(page);
    if (!to) return;
    VM_BUG_ON(offset + length > PAGE_SIZE);
    if (offset + length <= PAGE_SIZE) memcpy(to + offset, from, length);
    kunmap_local(to);
}

static inline void clear_highpage(struct page *page) {
    void *address = kmap_local_page(page);
    if (!address) return;
    memset(address, 0, PAGE_SIZE);
    kunmap_local(address);
}

static inline void copy_highpage(struct page *to, struct page *from) {
    char *source = (char *)kmap_local_page(from);
    if (!source) return;
    char *target = (char *)kmap_local_page(to);
    if (target) {
        memcpy(target, source, PAGE_SIZE);
        kunmap_local(target);
    }
    kunmap_local(source);
}

void *kmap_atomic(struct page *page);   /* not provided: link error */
void kunmap_atomic(void *address);      /* not provided: link error */

#endif /* MMULAB_LINUX_HIGHMEM_H */
