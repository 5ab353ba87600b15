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

#include <linux/errno.h>

#include <linux/sched/mm.h>

#include "probe.h"

struct instance {
    struct mmulab_linux_device *shim;
    const mmulab_host *host;
    /* Made by the first PROBE_GLUE_TO_DEVICE. */
    mmulab_device_memory *memory;
};

struct binding {
    struct mm_struct *mm;
    struct probe *probe;
};

static mmulab_status fail(mmulab_error *error, mmulab_status status, const char *message) {
    return mmulab_fail(error, status, "%s", message);
}

static mmulab_status create(const mmulab_host *host, const char *options, void **out, mmulab_error *error) {
    (void)options;
    struct instance *instance = calloc(1, sizeof *instance);
    if (!instance) return fail(error, MMULAB_ERR_NO_MEMORY, "out of memory");
    instance->host = host;
    mmulab_status status = mmulab_linux_device_create(host, "linux-shim-probe", &instance->shim, error);
    if (status != MMULAB_OK) {
        free(instance);
        return status;
    }
    *out = instance;
    return MMULAB_OK;
}

static void destroy(void *handle) {
    struct instance *instance = handle;
    /* A driver's remove evicts its device memory first. */
    if (instance->memory) instance->host->device_memory_evict(instance->host->context, instance->memory, UINT64_MAX);
    mmulab_linux_device_destroy(instance->shim);
    free(instance);
}

static mmulab_status attach(void *handle, const mmulab_binding_desc *desc, void **out, mmulab_error *error) {
    struct mmulab_linux_device *instance = ((struct instance *)handle)->shim;
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

static void detach(void *handle, void *binding_handle) {
    struct mmulab_linux_device *instance = ((struct instance *)handle)->shim;
    struct binding *binding = binding_handle;
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

/* PROBE_GLUE_TO_DEVICE: the page at `address` into the instance's device
 * memory (made on first use, 4 pages). */
static long to_device(struct instance *instance, struct binding *binding, uint64_t address) {
    const mmulab_host *host = instance->host;
    mmulab_error error = { 0 };
    if (!instance->memory &&
        host->device_memory_create(host->context, "probe vram", 4, (uint64_t)(uintptr_t)instance, &instance->memory,
                                   &error) != MMULAB_OK) {
        return -ENOMEM;
    }
    uint64_t moved = 0;
    mmulab_status status = host->migrate_to_device(host->context, instance->memory,
                                                   mmulab_linux_mm_address_space(binding->mm), address, 4096, &moved,
                                                   &error);
    return status == MMULAB_OK ? (long)moved : -EIO;
}

static mmulab_status control(void *handle, void *binding_handle, uint32_t command, void *argument, uint64_t size,
                             mmulab_error *error) {
    struct instance *instance = handle;
    struct binding *binding = binding_handle;
    if (!binding || !argument || size != sizeof(struct probe_command)) {
        return fail(error, MMULAB_ERR_INVALID, "control: a struct probe_command on a binding");
    }
    struct probe_command *c = argument;
    if (command == PROBE_GLUE_TO_DEVICE) {
        c->result = to_device(instance, binding, c->arguments[0]);
        return MMULAB_OK;
    }
    /* PROBE_NO_MM: a kernel thread's view, no current->mm. */
    struct mm_struct *mm = (command & PROBE_NO_MM) ? NULL : binding->mm;
    mmulab_linux_scope scope = mmulab_linux_enter(instance->shim, mm);
    c->result = probe_command(binding->probe, command & ~PROBE_NO_MM, c);
    mmulab_linux_leave(scope);
    return MMULAB_OK;
}

/* ABI 1.6: a CPU fault on the device memory memremap_pages made asks the
 * driver's pagemap first. */
static mmulab_status migrate_to_ram(void *handle, uint64_t address_space, uint64_t address, mmulab_error *error) {
    return mmulab_linux_migrate_to_ram(((struct instance *)handle)->shim, address_space, address, error);
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
    .migrate_to_ram = migrate_to_ram,
};

__attribute__((visibility("default"))) const mmulab_device_plugin *MMULAB_DEVICE_PLUGIN_ENTRY(uint16_t host_minor,
                                                                                               uint16_t *negotiated) {
    if (host_minor < MMULAB_LINUX_ABI_MINOR) return NULL;
    *negotiated = host_minor < MMULAB_ABI_MINOR ? host_minor : MMULAB_ABI_MINOR;
    return &descriptor;
}
