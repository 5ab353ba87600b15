/* Test fixture: fixture-lock-inversion with the order made consistent: access
 * faults first and takes the device lock only to check read_retry and install. */
#define FIXTURE_NAME "fixture-lock-ordered"
#include "misuse_plugin.h"
