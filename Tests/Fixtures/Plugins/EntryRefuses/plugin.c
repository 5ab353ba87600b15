/* Test fixture: a plugin whose entry returns no descriptor. */
#define FIXTURE_NAME "fixture-entryrefuses"
#define FIXTURE_ENTRY_BODY return NULL;
#include "broken_plugin_template.h"
