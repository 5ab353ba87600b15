/* Test fixture: unpins a translation fault_range gave (it was never pinned). */
#define FIXTURE_NAME "fixture-unpin-unpinned"
#define MISUSE_ACCESS(d, b, e) (d)->host->unpin((d)->ctx, &(e)->pfn, 1, false);
#include "misuse_plugin.h"
