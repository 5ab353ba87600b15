/* Test fixture: removes its interval twice at detach. */
#define FIXTURE_NAME "fixture-double-remove"
#define MISUSE_DETACH(d, b) (d)->host->interval_remove((d)->ctx, (b)->interval);
#include "misuse_plugin.h"
