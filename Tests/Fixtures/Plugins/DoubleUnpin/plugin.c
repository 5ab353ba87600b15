/* Test fixture: pins four pages at attach and unpins them twice at detach. */
#define FIXTURE_NAME "fixture-double-unpin"
#define PIN_PAGES 4
#define MISUSE_DETACH(d, b) (d)->host->unpin((d)->ctx, (b)->pinned, PIN_PAGES, true);
#include "misuse_plugin.h"
