/* Test fixture: attach returns holding a lock it took (detach releases it). */
#define FIXTURE_NAME "fixture-lock-held"
#define MISUSE_CREATE(d) (d)->spare_lock = (d)->host->lock_create((d)->ctx, "held lock", MMULAB_LOCK_SLEEPING);
#define MISUSE_ATTACH(d, b) (d)->host->lock((d)->spare_lock);
#define MISUSE_DETACH(d, b) (d)->host->unlock((d)->spare_lock);
#include "misuse_plugin.h"
