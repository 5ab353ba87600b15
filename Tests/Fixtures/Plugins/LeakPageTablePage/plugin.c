/* Test fixture: takes a page-table page at create and never frees it. */
#define FIXTURE_NAME "fixture-leak-page-table-page"
#define MISUSE_CREATE(d) (void)(d)->host->alloc_page_table_page((d)->ctx, &(d)->table_page);
#include "misuse_plugin.h"
