/* Test fixture: dereferences NULL in invalidate_range_start (of a whole-space
 * subscription made at attach): the host prints an oops and exits 4. */
#define FIXTURE_NAME "fixture-null-deref-start"
#define SUBSCRIBE
#define WHOLE_SPACE_START { volatile int *nothing = NULL; *nothing = 1; }
#include "misuse_plugin.h"
