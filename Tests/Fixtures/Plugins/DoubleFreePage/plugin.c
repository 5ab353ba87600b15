/* Test fixture: frees its page-table page twice. */
#define FIXTURE_NAME "fixture-double-free-page"
#define MISUSE_CREATE(d) { \
    if ((d)->host->alloc_page_table_page((d)->ctx, &(d)->table_page) == MMULAB_OK) { \
        (d)->host->free_page_table_page((d)->ctx, (d)->table_page); \
        (d)->host->free_page_table_page((d)->ctx, (d)->table_page); \
    } \
}
#include "misuse_plugin.h"
