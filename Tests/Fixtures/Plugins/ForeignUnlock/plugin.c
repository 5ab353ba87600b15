/* Test fixture: unlocks its device lock without holding it. */
#define FIXTURE_NAME "fixture-foreign-unlock"
#define MISUSE_ACCESS(d, b, e) (d)->host->unlock((b)->lock);
#include "misuse_plugin.h"
