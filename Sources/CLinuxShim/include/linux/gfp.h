/*
 * mmulab Linux shim: <linux/gfp.h>. Page allocation (alloc_page,
 * __free_page) is not provided: a driver's own pages would be memory the
 * lab does not model. See <linux/mm.h> for what is declared and missing.
 */
#ifndef MMULAB_LINUX_GFP_H
#define MMULAB_LINUX_GFP_H

#include <linux/gfp_types.h>

/* Whether an allocation with `gfp` may sleep. */
static inline bool gfpflags_allow_blocking(gfp_t gfp) { return (gfp & __GFP_DIRECT_RECLAIM) != 0; }

#endif /* MMULAB_LINUX_GFP_H */
