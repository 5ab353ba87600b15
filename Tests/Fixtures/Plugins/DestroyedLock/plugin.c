/* Test fixture: destroys a lock, then takes, releases, tries and destroys it again. */
#define FIXTURE_NAME "fixture-destroyed-lock"
#define MISUSE_CREATE(d) { \
    (d)->spare_lock = (d)->host->lock_create((d)->ctx, "spare lock", MMULAB_LOCK_SPIN); \
    (d)->host->lock_destroy((d)->spare_lock); \
    (d)->host->lock((d)->spare_lock); \
    (d)->host->unlock((d)->spare_lock); \
    (void)(d)->host->trylock((d)->spare_lock); \
    (d)->host->lock_destroy((d)->spare_lock); \
}
#include "misuse_plugin.h"
