/*
 * mmulab Linux shim: <linux/vmalloc.h>: vmalloc is kmalloc with
 * GFP_KERNEL here (the lab has no separate virtually contiguous area), so
 * it may sleep, and the same rules apply (<linux/slab.h>).
 */
#ifndef MMULAB_LINUX_VMALLOC_H
#define MMULAB_LINUX_VMALLOC_H

#include <linux/slab.h>

#define vmalloc(size) mmulab_linux_kmalloc((size), GFP_KERNEL, MMULAB_LINUX_FILE, __LINE__)
#define vzalloc(size) mmulab_linux_kmalloc((size), GFP_KERNEL | __GFP_ZERO, MMULAB_LINUX_FILE, __LINE__)
#define vmalloc_array(n, size) mmulab_linux_kmalloc_array((n), (size), GFP_KERNEL, MMULAB_LINUX_FILE, __LINE__)
#define vfree(pointer) mmulab_linux_kfree((pointer), MMULAB_LINUX_FILE, __LINE__)

#endif /* MMULAB_LINUX_VMALLOC_H */
