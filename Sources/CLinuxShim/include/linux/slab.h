/*
 * mmulab Linux shim: <linux/slab.h>.
 *
 * kmalloc and friends allocate from the C library, with the kernel's rules
 * applied through the host:
 *   - A flag that may sleep (GFP_KERNEL) where the calling thread may not
 *     (a spin lock held, a non-blockable notifier callback) is a context
 *     violation, reported by the host as Linux's "sleeping function called
 *     from invalid context" would be. The allocation then goes ahead.
 *   - In reclaim context (a callback called from page reclaim), every
 *     allocation, whatever its flags, is charged to the lab's physical
 *     memory: one frame of the host's bounded reserve per 4 KiB started
 *     (host->alloc_page_table_page), given back by kfree. When the reserve
 *     is spent the allocation fails and returns NULL, as an allocation
 *     under PF_MEMALLOC can in Linux: handle it.
 *   - kfree of a pointer kmalloc did not return, or twice, is reported as
 *     a BUG with the caller's file and line (where the shim can tell).
 *   - What an instance still has allocated when it is destroyed is
 *     reported, like kmemleak, as a finding.
 */
#ifndef MMULAB_LINUX_SLAB_H
#define MMULAB_LINUX_SLAB_H

#include <linux/gfp.h>
#include <linux/types.h>

void *mmulab_linux_kmalloc(size_t size, gfp_t gfp, const char *file, int line);
void *mmulab_linux_krealloc(const void *pointer, size_t size, gfp_t gfp, const char *file, int line);
void mmulab_linux_kfree(const void *pointer, const char *file, int line);

#define kmalloc(size, gfp) mmulab_linux_kmalloc((size), (gfp), MMULAB_LINUX_FILE, __LINE__)
#define kzalloc(size, gfp) mmulab_linux_kmalloc((size), (gfp) | __GFP_ZERO, MMULAB_LINUX_FILE, __LINE__)
#define krealloc(pointer, size, gfp) mmulab_linux_krealloc((pointer), (size), (gfp), MMULAB_LINUX_FILE, __LINE__)
#define kfree(pointer) mmulab_linux_kfree((pointer), MMULAB_LINUX_FILE, __LINE__)
#define kvfree(pointer) mmulab_linux_kfree((pointer), MMULAB_LINUX_FILE, __LINE__)

/* n * size, or NULL when it overflows (never a short allocation). */
void *mmulab_linux_kmalloc_array(size_t n, size_t size, gfp_t gfp, const char *file, int line);

#define kmalloc_array(n, size, gfp) mmulab_linux_kmalloc_array((n), (size), (gfp), MMULAB_LINUX_FILE, __LINE__)
#define kcalloc(n, size, gfp) mmulab_linux_kmalloc_array((n), (size), (gfp) | __GFP_ZERO, MMULAB_LINUX_FILE, __LINE__)
#define kvmalloc(size, gfp) mmulab_linux_kmalloc((size), (gfp), MMULAB_LINUX_FILE, __LINE__)
#define kvzalloc(size, gfp) mmulab_linux_kmalloc((size), (gfp) | __GFP_ZERO, MMULAB_LINUX_FILE, __LINE__)
#define kvmalloc_array(n, size, gfp) mmulab_linux_kmalloc_array((n), (size), (gfp), MMULAB_LINUX_FILE, __LINE__)
#define kvcalloc(n, size, gfp) mmulab_linux_kmalloc_array((n), (size), (gfp) | __GFP_ZERO, MMULAB_LINUX_FILE, __LINE__)

void *mmulab_linux_kmemdup(const void *source, size_t length, gfp_t gfp, const char *file, int line);
#define kmemdup(source, length, gfp) mmulab_linux_kmemdup((source), (length), (gfp), MMULAB_LINUX_FILE, __LINE__)

#endif /* MMULAB_LINUX_SLAB_H */
