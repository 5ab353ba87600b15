/*
 * mmulab Linux shim: <linux/gfp_types.h>: the allocation flags by their
 * kernel names. What the shim does with them (<linux/slab.h>):
 *   __GFP_DIRECT_RECLAIM  the allocation may sleep: called where the thread
 *                         may not (under a spin lock, in a non-blockable
 *                         notifier callback) it is reported as a context
 *                         violation, as Linux's might_sleep in the allocator
 *                         would; GFP_KERNEL has it, GFP_ATOMIC and
 *                         GFP_NOWAIT do not.
 *   __GFP_ZERO            the memory is zeroed.
 * Every other flag is accepted and has no further effect here.
 */
#ifndef MMULAB_LINUX_GFP_TYPES_H
#define MMULAB_LINUX_GFP_TYPES_H

#include <linux/types.h>

#define __GFP_DMA 0x01u
#define __GFP_HIGHMEM 0x02u
#define __GFP_DMA32 0x04u
#define __GFP_MOVABLE 0x08u
#define __GFP_HIGH 0x20u
#define __GFP_IO 0x40u
#define __GFP_FS 0x80u
#define __GFP_ZERO 0x100u
#define __GFP_DIRECT_RECLAIM 0x400u
#define __GFP_KSWAPD_RECLAIM 0x800u
#define __GFP_NOWARN 0x2000u
#define __GFP_RETRY_MAYFAIL 0x4000u
#define __GFP_NOFAIL 0x8000u
#define __GFP_NORETRY 0x10000u
#define __GFP_ACCOUNT 0x400000u
#define __GFP_RECLAIM (__GFP_DIRECT_RECLAIM | __GFP_KSWAPD_RECLAIM)

#define GFP_ATOMIC (__GFP_HIGH | __GFP_KSWAPD_RECLAIM)
#define GFP_KERNEL (__GFP_RECLAIM | __GFP_IO | __GFP_FS)
#define GFP_KERNEL_ACCOUNT (GFP_KERNEL | __GFP_ACCOUNT)
#define GFP_NOWAIT (__GFP_KSWAPD_RECLAIM)
#define GFP_NOIO (__GFP_RECLAIM)
#define GFP_NOFS (__GFP_RECLAIM | __GFP_IO)
#define GFP_USER (__GFP_RECLAIM | __GFP_IO | __GFP_FS)
#define GFP_HIGHUSER (GFP_USER | __GFP_HIGHMEM)

#endif /* MMULAB_LINUX_GFP_TYPES_H */
