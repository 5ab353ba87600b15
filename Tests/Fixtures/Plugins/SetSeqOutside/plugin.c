/* Test fixture: calls interval_set_seq from an access, outside the interval's invalidate callback. */
#define FIXTURE_NAME "fixture-set-seq-outside"
#define MISUSE_ACCESS(d, b, e) (d)->host->interval_set_seq((b)->interval, 1);
#include "misuse_plugin.h"
