/* Test fixture: registers a shrinker at create and never unregisters it. */
#define FIXTURE_NAME "fixture-leak-shrinker"
#define MISUSE_CREATE(d) (d)->host->shrinker_register((d)->ctx, "leaky cache", &shrinker_ops, (d), &(d)->shrinker);
#include "misuse_plugin.h"
