/* Test fixture: passes translations the host never handed out to set_dirty,
 * mark_accessed, dma_read, dma_write and unpin (a pfn past the machine's
 * frames, past Int32.max; and a generation the frame has not reached). */
#define FIXTURE_NAME "fixture-foreign-pfn"
#define MISUSE_ACCESS(d, b, e) { \
    mmulab_pfn bad = { .address = (e)->pfn.address, .pfn = 0x100000000ull, .generation = 1, .flags = MMULAB_PFN_PINNED }; \
    char buffer[16] = { 0 }; \
    (d)->host->set_dirty((d)->ctx, &bad); \
    (d)->host->mark_accessed((d)->ctx, &bad); \
    (d)->host->dma_read((d)->ctx, (b)->desc.address_space, &bad, buffer, sizeof buffer); \
    (d)->host->dma_write((d)->ctx, (b)->desc.address_space, &bad, buffer, sizeof buffer); \
    (d)->host->unpin((d)->ctx, &bad, 1, false); \
    mmulab_pfn future = (e)->pfn; \
    future.generation += 1000; \
    (d)->host->dma_read((d)->ctx, (b)->desc.address_space, &future, buffer, sizeof buffer); \
}
#include "misuse_plugin.h"
