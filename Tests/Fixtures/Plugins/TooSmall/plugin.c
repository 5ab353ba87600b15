/* Test fixture: a plugin whose descriptor is too small. */
#define FIXTURE_NAME "fixture-toosmall"
#define FIXTURE_SIZE 16
#include "broken_plugin_template.h"
