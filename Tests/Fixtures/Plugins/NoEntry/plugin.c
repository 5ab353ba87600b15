/* Test fixture: a shared object without the entry symbol. */
#define FIXTURE_NAME "fixture-noentry"
#define FIXTURE_ENTRY not_the_plugin_entry
#include "broken_plugin_template.h"
