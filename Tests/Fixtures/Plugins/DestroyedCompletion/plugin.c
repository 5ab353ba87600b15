/* Test fixture: destroys a completion, then completes it and waits for it. */
#define FIXTURE_NAME "fixture-destroyed-completion"
#define MISUSE_CREATE(d) { \
    (d)->spare_completion = (d)->host->completion_create((d)->ctx, "spare completion"); \
    (d)->host->completion_destroy((d)->spare_completion); \
    (d)->host->completion_complete((d)->spare_completion); \
    (void)(d)->host->completion_wait((d)->spare_completion, 1000000); \
    (d)->host->completion_destroy((d)->spare_completion); \
}
#include "misuse_plugin.h"
