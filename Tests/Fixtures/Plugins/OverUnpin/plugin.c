/* Test fixture: pins two pages and unpins four (each pinned page twice, in one call). */
#define FIXTURE_NAME "fixture-over-unpin"
#define PIN_PAGES 2
#define SKIP_UNPIN
#define MISUSE_DETACH(d, b) { \
    mmulab_pfn more[4] = { (b)->pinned[0], (b)->pinned[1], (b)->pinned[0], (b)->pinned[1] }; \
    (d)->host->unpin((d)->ctx, more, 4, true); \
}
#include "misuse_plugin.h"
