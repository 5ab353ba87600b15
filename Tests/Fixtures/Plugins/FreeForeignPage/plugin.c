/* Test fixture: frees, as a page-table page, a data page fault_range gave. */
#define FIXTURE_NAME "fixture-free-foreign-page"
#define MISUSE_ACCESS(d, b, e) (d)->host->free_page_table_page((d)->ctx, (e)->pfn.pfn);
#include "misuse_plugin.h"
