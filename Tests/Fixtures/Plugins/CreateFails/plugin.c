/* Test fixture: a plugin whose create fails. Built as a shared object by the package; the
 * PluginHost tests load it and expect it to be rejected at create. */
#include <stddef.h>
#include <string.h>
#include <stdio.h>
#include "mmulab_device_plugin.h"

static mmulab_status create(const mmulab_host *host, const char *options, void **instance, mmulab_error *error) {
    (void)options;
    (void)host; (void)instance;
    error->status = MMULAB_ERR_INVALID;
    snprintf(error->message, sizeof error->message, "this fixture always fails to create");
    return MMULAB_ERR_INVALID;
}
static void destroy(void *instance) { (void)instance; }

static mmulab_status attach(void *instance, const mmulab_binding_desc *desc, void **out, mmulab_error *error) {
    (void)error;
    (void)instance; (void)desc;
    *out = NULL;
    return MMULAB_OK;
}
static void detach(void *instance, void *binding) {
    (void)instance; (void)binding;
}
static mmulab_status access_page(void *instance, void *binding, uint64_t address, uint32_t flags, void *buffer,
                                 uint32_t length, mmulab_error *error) {
    (void)instance; (void)binding; (void)address; (void)flags; (void)buffer; (void)length; (void)error;
    return MMULAB_OK;
}

static const mmulab_device_plugin descriptor = {
    .struct_size = sizeof(mmulab_device_plugin),
    .abi_major = MMULAB_ABI_MAJOR,
    .abi_minor = MMULAB_ABI_MINOR,
    .name = "fixture-createfails",
    .version = "0",
    .description = "a plugin whose create fails",
    .create = create,
    .destroy = destroy,
    .attach = attach,
    .detach = detach,
    .access = access_page,
};

__attribute__((visibility("default"))) const mmulab_device_plugin *MMULAB_DEVICE_PLUGIN_ENTRY(uint16_t host_minor, uint16_t *negotiated) {
    *negotiated = host_minor;
    return &descriptor;
}
