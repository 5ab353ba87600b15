/* Test fixture: calls lookup_range (ABI 1.6) with a NULL pfn buffer, an
 * unaligned range and one past the address space, on an address space that
 * was never made, and passes an entry it found nothing at (MMULAB_PFN_NONE)
 * to dma_read. */
#define FIXTURE_NAME "fixture-bad-lookup"
#define MISUSE_ACCESS(d, b, e) { \
    mmulab_error error; \
    mmulab_pfn pfn = { 0 }; \
    char bytes[16]; \
    (void)(d)->host->lookup_range((d)->ctx, (b)->desc.address_space, (e)->pfn.address, PAGE, NULL, &error); \
    (void)(d)->host->lookup_range((d)->ctx, (b)->desc.address_space, (e)->pfn.address + 8, PAGE, &pfn, &error); \
    (void)(d)->host->lookup_range((d)->ctx, (b)->desc.address_space, 1ull << 62, PAGE, &pfn, &error); \
    (void)(d)->host->lookup_range((d)->ctx, 0xdead0000ull, (e)->pfn.address, PAGE, &pfn, &error); \
    pfn = (mmulab_pfn){ .address = (e)->pfn.address, .flags = MMULAB_PFN_NONE }; \
    (d)->host->dma_read((d)->ctx, (b)->desc.address_space, &pfn, bytes, sizeof bytes); \
}
#include "misuse_plugin.h"
