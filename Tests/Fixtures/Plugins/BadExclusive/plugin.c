/* Test fixture: calls make_exclusive (ABI 1.5) with a NULL pfn, an
 * unaligned address, an address past the address space and an address
 * space that was never made. */
#define FIXTURE_NAME "fixture-bad-exclusive"
#define MISUSE_ACCESS(d, b, e) { \
    mmulab_error error; \
    mmulab_pfn pfn; \
    (void)(d)->host->make_exclusive((d)->ctx, (b)->desc.address_space, (e)->pfn.address, 0, NULL, &error); \
    (void)(d)->host->make_exclusive((d)->ctx, (b)->desc.address_space, (e)->pfn.address + 8, 0, &pfn, &error); \
    (void)(d)->host->make_exclusive((d)->ctx, (b)->desc.address_space, 1ull << 62, 0, &pfn, &error); \
    (void)(d)->host->make_exclusive((d)->ctx, 0xdead0000ull, (e)->pfn.address, 0, &pfn, &error); \
}
#include "misuse_plugin.h"
