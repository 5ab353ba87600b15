/* The body of the deliberately broken fixture plugins. Each fixture's
 * plugin.c defines what it breaks, then includes this file:
 *
 *   FIXTURE_NAME        the plugin's name (required)
 *   FIXTURE_SIZE        descriptor struct_size       (default: the full size)
 *   FIXTURE_MAJOR       descriptor abi_major         (default: MMULAB_ABI_MAJOR)
 *   FIXTURE_ACCESS      the access operation         (default: a working one)
 *   FIXTURE_ENTRY       the exported symbol          (default: the real entry)
 *   FIXTURE_CREATE_FAILS  create returns an error with a message
 *   FIXTURE_ENTRY_BODY  the entry's statements       (default: accept the host's minor)
 */
#include <stdio.h>
#include "mmulab_device_plugin.h"

#ifndef FIXTURE_SIZE
#define FIXTURE_SIZE sizeof(mmulab_device_plugin)
#endif
#ifndef FIXTURE_MAJOR
#define FIXTURE_MAJOR MMULAB_ABI_MAJOR
#endif
#ifndef FIXTURE_ACCESS
#define FIXTURE_ACCESS access_page
#endif
#ifndef FIXTURE_ENTRY
#define FIXTURE_ENTRY MMULAB_DEVICE_PLUGIN_ENTRY
#endif
#ifndef FIXTURE_ENTRY_BODY
#define FIXTURE_ENTRY_BODY \
    *negotiated = host_minor; \
    return &descriptor;
#endif

static mmulab_status create(const mmulab_host *host, const char *options, void **instance, mmulab_error *error) {
    (void)options;
#ifdef FIXTURE_CREATE_FAILS
    (void)host; (void)instance;
    error->status = MMULAB_ERR_INVALID;
    snprintf(error->message, sizeof error->message, "this fixture always fails to create");
    return MMULAB_ERR_INVALID;
#else
    (void)error;
    *instance = (void *)host;
    return MMULAB_OK;
#endif
}
static void destroy(void *instance) { (void)instance; }
static mmulab_status attach(void *instance, const mmulab_binding_desc *desc, void **out, mmulab_error *error) {
    (void)instance; (void)desc; (void)error;
    *out = NULL;
    return MMULAB_OK;
}
static void detach(void *instance, void *binding) { (void)instance; (void)binding; }
static mmulab_status access_page(void *instance, void *binding, uint64_t address, uint32_t flags, void *buffer,
                                 uint32_t length, mmulab_error *error) {
    (void)instance; (void)binding; (void)address; (void)flags; (void)buffer; (void)length; (void)error;
    return MMULAB_OK;
}

static const mmulab_device_plugin descriptor = {
    .struct_size = FIXTURE_SIZE,
    .abi_major = FIXTURE_MAJOR,
    .abi_minor = MMULAB_ABI_MINOR,
    .name = FIXTURE_NAME,
    .version = "0",
    .description = "a deliberately broken test fixture",
    .create = create,
    .destroy = destroy,
    .attach = attach,
    .detach = detach,
    .access = FIXTURE_ACCESS,
};

__attribute__((visibility("default"))) const mmulab_device_plugin *FIXTURE_ENTRY(uint16_t host_minor, uint16_t *negotiated) {
    (void)host_minor; (void)negotiated; (void)access_page;
    FIXTURE_ENTRY_BODY
}
