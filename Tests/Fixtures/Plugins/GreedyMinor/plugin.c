/* Test fixture: a plugin that picks a minor the host did not offer. */
#define FIXTURE_NAME "fixture-greedyminor"
#define FIXTURE_ENTRY_BODY *negotiated = (uint16_t)(host_minor + 5); return &descriptor;
#include "broken_plugin_template.h"
