/* Test fixture: leaves its interval registered when the binding is detached. */
#define FIXTURE_NAME "fixture-leak-interval"
#define SKIP_INTERVAL_REMOVE
#include "misuse_plugin.h"
