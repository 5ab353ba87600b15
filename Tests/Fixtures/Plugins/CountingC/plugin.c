/* Test and benchmark fixture: a plugin whose every binding subscribes to its
 * whole address space and only counts starts and ends. The PluginHost tests
 * check the counts; the callback benchmark measures one call through the ABI. */
#include <stdatomic.h>
#include <stdlib.h>
#include "mmulab_device_plugin.h"

typedef struct counting {
    const mmulab_host *host;
    mmulab_subscription *subscription;
    _Atomic uint64_t starts, ends;
} counting;

static mmulab_status start(void *data, const mmulab_range *range) {
    (void)range;
    atomic_fetch_add_explicit(&((counting *)data)->starts, 1, memory_order_relaxed);
    return MMULAB_OK;
}
static void end(void *data, const mmulab_range *range) {
    (void)range;
    atomic_fetch_add_explicit(&((counting *)data)->ends, 1, memory_order_relaxed);
}
static const mmulab_subscriber_ops ops = { .struct_size = sizeof(mmulab_subscriber_ops),
                                           .invalidate_range_start = start, .invalidate_range_end = end };

static mmulab_status create(const mmulab_host *host, const char *options, void **instance, mmulab_error *error) {
    (void)options; (void)error;
    counting *c = calloc(1, sizeof *c);
    c->host = host;
    *instance = c;
    return MMULAB_OK;
}
static void destroy(void *instance) { free(instance); }
static mmulab_status attach(void *instance, const mmulab_binding_desc *desc, void **out, mmulab_error *error) {
    counting *c = instance;
    *out = c;
    return c->host->subscribe(c->host->context, desc->address_space, &ops, c, &c->subscription, error);
}
static void detach(void *instance, void *binding) {
    (void)binding;
    counting *c = instance;
    c->host->unsubscribe(c->host->context, c->subscription);
}
static mmulab_status access_page(void *instance, void *binding, uint64_t address, uint32_t flags, void *buffer,
                                 uint32_t length, mmulab_error *error) {
    (void)instance; (void)binding; (void)address; (void)flags; (void)buffer; (void)length; (void)error;
    return MMULAB_ERR_NOT_SUPPORTED;
}
static const char *names[] = { "starts", "ends" };
static uint32_t stat_count(void *instance) { (void)instance; return 2; }
static mmulab_status stat_get(void *instance, uint32_t index, const char **name, uint64_t *value) {
    counting *c = instance;
    if (index > 1) return MMULAB_ERR_INVALID;
    *name = names[index];
    *value = index == 0 ? atomic_load(&c->starts) : atomic_load(&c->ends);
    return MMULAB_OK;
}
static const mmulab_device_plugin descriptor = {
    .struct_size = sizeof(mmulab_device_plugin), .abi_major = MMULAB_ABI_MAJOR, .abi_minor = MMULAB_ABI_MINOR,
    .name = "counting-c", .version = "1", .description = "counts whole-space starts and ends",
    .create = create, .destroy = destroy, .attach = attach, .detach = detach, .access = access_page,
    .stat_count = stat_count, .stat_get = stat_get,
};
__attribute__((visibility("default"))) const mmulab_device_plugin *MMULAB_DEVICE_PLUGIN_ENTRY(uint16_t host_minor, uint16_t *negotiated) {
    *negotiated = host_minor < MMULAB_ABI_MINOR ? host_minor : MMULAB_ABI_MINOR;
    return &descriptor;
}
