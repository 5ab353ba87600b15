/* Test fixture: page references (ABI 1.6) misused: page_get of a NULL
 * pfn, page_put of a reference never taken, a second page_put of one taken
 * once, and a DMA through a translation marked MMULAB_PFN_REFERENCED that
 * holds no reference. */
#define FIXTURE_NAME "fixture-bad-reference"
#define MISUSE_ACCESS(d, b, e) { \
    mmulab_pfn held = (e)->pfn; \
    char bytes[16]; \
    (void)(d)->host->page_get((d)->ctx, NULL); \
    (d)->host->page_put((d)->ctx, &held); \
    if ((d)->host->page_get((d)->ctx, &held) == MMULAB_OK) { \
        (d)->host->page_put((d)->ctx, &held); \
        (d)->host->page_put((d)->ctx, &held); \
    } \
    held.flags |= MMULAB_PFN_REFERENCED; \
    (d)->host->dma_read((d)->ctx, (b)->desc.address_space, &held, bytes, sizeof bytes); \
}
#include "misuse_plugin.h"
