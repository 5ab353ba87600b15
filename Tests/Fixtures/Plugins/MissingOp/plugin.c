/* Test fixture: a plugin without the access operation. */
#define FIXTURE_NAME "fixture-missingop"
#define FIXTURE_ACCESS NULL
#include "broken_plugin_template.h"
