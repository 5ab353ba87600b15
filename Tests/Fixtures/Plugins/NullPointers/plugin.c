/* Test fixture: passes NULL where a pfn, a lock, an interval or a completion belongs. */
#define FIXTURE_NAME "fixture-null-pointers"
#define MISUSE_ACCESS(d, b, e) { \
    char buffer[16] = { 0 }; \
    (d)->host->set_dirty((d)->ctx, NULL); \
    (d)->host->mark_accessed((d)->ctx, NULL); \
    (d)->host->dma_read((d)->ctx, (b)->desc.address_space, NULL, buffer, sizeof buffer); \
    (d)->host->unpin((d)->ctx, NULL, 1, false); \
    (d)->host->lock(NULL); \
    (d)->host->unlock(NULL); \
    (void)(d)->host->interval_read_begin(NULL); \
    (d)->host->completion_complete(NULL); \
    (d)->host->set_dirty(NULL, &(e)->pfn); \
}
#include "misuse_plugin.h"
