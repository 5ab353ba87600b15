/*
 * The Linux shim probe's glue: a binding opens a probe on its range; the
 * plugin's control operation runs one probe command (probe.h) in the
 * binding's scope and writes its result back, whatever it is (the tests
 * read -EBUSY and friends from it). Options: none.
 */
#include <stdio.h>
#include <stdlib.h>

#include "mmulab_device_plugin.h"
#include "mmulab/linux_glue.h"

#include <linux/sched/mm.h>

#include "probe.h"

struct binding {
    struct mm_struct *mm;
    struct probe *probe;
};

static mmulab_status fail(mmulab_error *error, mmulab_status status, const char *message) {
    return mmulab_fail(error, status, "%s", message);
}

static mmulab_status create(const mmulab_host *host, const char *options, void **out, mmulab_error *error) {
    (void)options;
    return mmulab_linux_device_create(host, "linux-shim-probe", (struct mmulab_linux_device **)out, error);
}

static void destroy(void *instance) { mmulab_linux_device_destroy(instance); }

static mmulab_status attach(void *instance, const mmulab_binding_desc *desc, void **out, mmulab_error *error) {
    struct binding *binding = calloc(1, sizeof *binding);
    if (!binding) return fail(error, MMULAB_ERR_NO_MEMORY, "out of memory");
    binding->mm = mmulab_linux_mm_get(instance, desc->address_space, error);
    if (!binding->mm) {
        free(binding);
        return error ? error->status : MMULAB_ERR_INTERNAL;
    }
    mmulab_linux_scope scope = mmulab_linux_enter(instance, binding->mm);
    binding->probe = probe_open(desc->start, desc->length);
    if (!binding->probe) mmdrop(binding->mm);
    mmulab_linux_leave(scope);
    if (!binding->probe) {
        free(binding);
        return fail(error, MMULAB_ERR_NO_MEMORY, "probe_open failed");
    }
    *out = binding;
    return MMULAB_OK;
}

static void detach(void *instance, void *handle) {
    struct binding *binding = handle;
    mmulab_linux_scope scope = mmulab_linux_enter(instance, binding->mm);
    probe_release(binding->probe);
    mmdrop(binding->mm);
    mmulab_linux_leave(scope);
    free(binding);
}

static mmulab_status access_page(void *instance, void *handle, uint64_t device_address, uint32_t flags, void *buffer,
                                 uint32_t length, mmulab_error *error) {
    (void)instance, (void)handle, (void)device_address, (void)flags, (void)buffer, (void)length;
    return fail(error, MMULAB_ERR_NOT_SUPPORTED, "the probe has no device accesses: use control");
}

static mmulab_status control(void *instance, void *handle, uint32_t command, void *argument, uint64_t size,
                             mmulab_error *error) {
    struct binding *binding = handle;
    if (!binding || !argument || size != sizeof(struct probe_command)) {
        return fail(error, MMULAB_ERR_INVALID, "control: a struct probe_command on a binding");
    }
    struct probe_command *c = argument;
    mmulab_linux_scope scope = mmulab_linux_enter(instance, binding->mm);
    c->result = probe_command(binding->probe, command, c);
    mmulab_linux_leave(scope);
    return MMULAB_OK;
}

static const mmulab_device_plugin descriptor = {
    .struct_size = sizeof(mmulab_device_plugin),
    .abi_major = MMULAB_ABI_MAJOR,
    .abi_minor = MMULAB_ABI_MINOR,
    .name = "linux-shim-probe",
    .version = "1.0",
    .description = "Kernel-style probes of the Linux shim, one function at a time (tests only).",
    .capabilities = MMULAB_CAP_FAILS_NONBLOCKING,
    .create = create,
    .destroy = destroy,
    .attach = attach,
    .detach = detach,
    .access = access_page,
    .control = control,
};

__attribute__((visibility("default"))) const mmulab_device_plugin *MMULAB_DEVICE_PLUGIN_ENTRY(uint16_t host_minor,
                                                                                               uint16_t *negotiated) {
    if (host_minor < MMULAB_LINUX_ABI_MINOR) return NULL;
    *negotiated = host_minor < MMULAB_ABI_MINOR ? host_minor : MMULAB_ABI_MINOR;
    return &descriptor;
}
