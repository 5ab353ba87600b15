/* Test fixture: a plugin that sleeps in every invalidate_range_start, blockable or not. Built as a shared object by the package; the
 * PluginHost tests load it and expect it to be loaded, and reported for sleeping in a non-blockable callback. */
#include <stddef.h>
#include <string.h>
#include <stdio.h>
#include "mmulab_device_plugin.h"

static mmulab_status create(const mmulab_host *host, const char *options, void **instance, mmulab_error *error) {
    (void)options;
    (void)error;
    *instance = (void *)host;
    return MMULAB_OK;
}
static void destroy(void *instance) { (void)instance; }

typedef struct { const mmulab_host *host; mmulab_subscription *subscription; } sleepy;
static mmulab_status start(void *data, const mmulab_range *range) {
    (void)range;
    sleepy *s = data;
    s->host->sleep_ns(s->host->context, 1000); /* wrong when the range is not blockable */
    return MMULAB_OK;
}
static void end(void *data, const mmulab_range *range) { (void)data; (void)range; }
static const mmulab_subscriber_ops ops = { .struct_size = sizeof(mmulab_subscriber_ops),
                                          .invalidate_range_start = start, .invalidate_range_end = end };
static sleepy state;

static mmulab_status attach(void *instance, const mmulab_binding_desc *desc, void **out, mmulab_error *error) {
    (void)error;
    const mmulab_host *host = instance;
    state.host = host;
    mmulab_status status = host->subscribe(host->context, desc->address_space, &ops, &state, &state.subscription, error);
    *out = &state;
    return status;
}
static void detach(void *instance, void *binding) {
    (void)binding;
    const mmulab_host *host = instance;
    host->unsubscribe(host->context, state.subscription);
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
    .name = "fixture-sleepy",
    .version = "0",
    .description = "a plugin that sleeps in every invalidate_range_start, blockable or not",
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
