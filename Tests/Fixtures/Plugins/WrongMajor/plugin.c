/* Test fixture: a plugin built for ABI 2. */
#define FIXTURE_NAME "fixture-wrongmajor"
#define FIXTURE_MAJOR 2
#include "broken_plugin_template.h"
