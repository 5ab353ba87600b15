/* Test fixture: a plugin that loads and attaches, then abort()s on its first device access, as a buggy plugin
 * would crash its host. The CLI tests run it under `mmulab campaign` and expect the run reported as crashed. */
#include <stdlib.h>
#include "mmulab_device_plugin.h"

static mmulab_status crash_on_access(void *instance, void *binding, uint64_t address, uint32_t flags, void *buffer,
                                     uint32_t length, mmulab_error *error) {
    (void)instance; (void)binding; (void)address; (void)flags; (void)buffer; (void)length; (void)error;
    abort();
}

#define FIXTURE_NAME "fixture-crashes"
#define FIXTURE_ACCESS crash_on_access
#include "broken_plugin_template.h"
