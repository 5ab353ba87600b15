/*
 * mmulab Linux shim: <linux/mm_types.h>.
 *
 * struct mm_struct stands for one address space of the lab, as one
 * device instance sees it (the glue gets it with mmulab_linux_mm_get).
 * mm_users counts the users that keep the address space alive
 * (mmget/mmput; it drops to 0 when the lab's address space exits, so
 * mmget_not_zero fails after that), mm_count the references that keep the
 * structure (mmgrab/mmdrop). mmap_lock is a rw_semaphore of the shim's: it
 * gives mmap_read_lock its context rules and lockdep assertions
 * (hmm_range_fault asserts it), but the lab's own primary MMU does not
 * take it, so it does not hold munmap or mprotect off.
 *
 * struct page and struct folio are opaque: a page pointer is a handle the
 * shim made for one translation the primary MMU gave (its address space,
 * address, frame, the frame's generation and permission). Keep it as
 * Linux's struct page pointers are kept; reach its memory only through
 * kmap (<linux/highmem.h>), whose accesses are the lab's checked DMA, so a
 * page used after its translation went stale is found.
 */
#ifndef MMULAB_LINUX_MM_TYPES_H
#define MMULAB_LINUX_MM_TYPES_H

#include <linux/atomic.h>
#include <linux/rwsem.h>
#include <linux/types.h>

struct page;
struct folio;
struct mmulab_linux_device;
struct mmulab_linux_mm;

struct mm_struct {
    atomic_t mm_users;
    atomic_t mm_count;
    struct rw_semaphore mmap_lock;
    /* The shim's: which address space, for which device. */
    struct mmulab_linux_mm *mmulab;
};

/* A vma, as far as migrate_vma needs one (<linux/migrate.h>): vma_lookup
 * gives the mm's only one, spanning the whole address space: the plugin
 * ABI says nothing of the primary's VMAs, so its bounds are not the
 * mapping's. It is never freed while the mm lives. */
struct vm_area_struct {
    struct mm_struct *vm_mm;
    unsigned long vm_start;
    unsigned long vm_end;
};

#endif /* MMULAB_LINUX_MM_TYPES_H */
