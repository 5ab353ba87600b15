/* Test fixture: a plugin whose create fails. */
#define FIXTURE_NAME "fixture-createfails"
#define FIXTURE_CREATE_FAILS 1
#include "broken_plugin_template.h"
