/*
 * The one mmulab file of the kernel-style mirror: it declares the plugin
 * and maps the lab's calls onto the driver's own functions (kmirror.h), as
 * the driver's file operations would in a kernel:
 *
 *   create   -> kmirror_device_create   (probe)
 *   attach   -> kmirror_open            (open of the device by the process)
 *   access   -> kmirror_read / _write   (the read and write ioctls)
 *   detach   -> kmirror_release         (release)
 *   destroy  -> kmirror_device_destroy  (remove)
 *
 * Each call runs in a shim scope: the device, and current->mm = the mm of
 * the binding's address space. Options: bug=NAME (several separated by
 * commas) turns on one of the driver's deliberate bugs:
 *   no-set-seq, no-read-retry, mutex-in-nonblockable, keep-write-tag.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mmulab_device_plugin.h"
#include "mmulab/linux_glue.h"

#include <linux/sched/mm.h>

#include "kmirror.h"

#define PAGE 4096u

struct instance {
    struct mmulab_linux_device *shim;
    struct kmirror_device *device;
};

struct binding {
    struct instance *instance;
    struct mm_struct *mm;
    struct kmirror *mirror;
    uint64_t start, length, device_address;
    int writable;
};

static mmulab_status fail(mmulab_error *error, mmulab_status status, const char *message) {
    return mmulab_fail(error, status, "%s", message);
}

static const struct {
    const char *name;
    unsigned long bit;
} bug_names[] = {
    { "no-set-seq", KMIRROR_BUG_NO_SET_SEQ },
    { "no-read-retry", KMIRROR_BUG_NO_READ_RETRY },
    { "mutex-in-nonblockable", KMIRROR_BUG_MUTEX_IN_NONBLOCKABLE },
    { "keep-write-tag", KMIRROR_BUG_KEEP_WRITE_TAG },
};

/* "bug=a,b" -> the bits; false (and `error` filled) for anything else. */
static int parse_options(const char *options, unsigned long *bugs, mmulab_error *error) {
    *bugs = 0;
    if (!options || !*options) return 1;
    if (strncmp(options, "bug=", 4) != 0) {
        fail(error, MMULAB_ERR_INVALID, "kernel-mirror options: bug=NAME[,NAME] (no-set-seq, no-read-retry, "
                                        "mutex-in-nonblockable, keep-write-tag)");
        return 0;
    }
    const char *name = options + 4;
    while (*name) {
        size_t length = strcspn(name, ",");
        unsigned long bit = 0;
        for (size_t i = 0; i < sizeof bug_names / sizeof bug_names[0]; i++) {
            if (strlen(bug_names[i].name) == length && strncmp(name, bug_names[i].name, length) == 0) bit = bug_names[i].bit;
        }
        if (!bit) {
            fail(error, MMULAB_ERR_INVALID, "kernel-mirror: unknown bug (no-set-seq, no-read-retry, "
                                            "mutex-in-nonblockable, keep-write-tag)");
            return 0;
        }
        *bugs |= bit;
        name += length;
        if (*name == ',') name++;
    }
    return 1;
}

static mmulab_status create(const mmulab_host *host, const char *options, void **out, mmulab_error *error) {
    unsigned long bugs;
    if (!parse_options(options, &bugs, error)) return MMULAB_ERR_INVALID;
    struct instance *instance = calloc(1, sizeof *instance);
    if (!instance) return fail(error, MMULAB_ERR_NO_MEMORY, "out of memory");
    mmulab_status status = mmulab_linux_device_create(host, "kernel-mirror", &instance->shim, error);
    if (status != MMULAB_OK) {
        free(instance);
        return status;
    }
    mmulab_linux_scope scope = mmulab_linux_enter(instance->shim, NULL);
    instance->device = kmirror_device_create(bugs);
    mmulab_linux_leave(scope);
    if (!instance->device) {
        mmulab_linux_device_destroy(instance->shim);
        free(instance);
        return fail(error, MMULAB_ERR_NO_MEMORY, "kmirror_device_create failed");
    }
    *out = instance;
    return MMULAB_OK;
}

static void destroy(void *handle) {
    struct instance *instance = handle;
    mmulab_linux_scope scope = mmulab_linux_enter(instance->shim, NULL);
    kmirror_device_destroy(instance->device);
    mmulab_linux_leave(scope);
    mmulab_linux_device_destroy(instance->shim);
    free(instance);
}

static mmulab_status attach(void *handle, const mmulab_binding_desc *desc, void **out, mmulab_error *error) {
    struct instance *instance = handle;
    if (desc->length == 0 || desc->start % PAGE || desc->length % PAGE || desc->device_address % PAGE) {
        return fail(error, MMULAB_ERR_INVALID, "a binding must be page aligned and not empty");
    }
    struct binding *binding = calloc(1, sizeof *binding);
    if (!binding) return fail(error, MMULAB_ERR_NO_MEMORY, "out of memory");
    binding->mm = mmulab_linux_mm_get(instance->shim, desc->address_space, error);
    if (!binding->mm) {
        free(binding);
        return error ? error->status : MMULAB_ERR_INTERNAL;
    }
    mmulab_linux_scope scope = mmulab_linux_enter(instance->shim, binding->mm);
    int ret = kmirror_open(instance->device, &binding->mirror);
    if (ret) mmdrop(binding->mm);
    mmulab_linux_leave(scope);
    if (ret) {
        free(binding);
        return mmulab_linux_fail(error, ret, "kmirror_open");
    }
    binding->instance = instance;
    binding->start = desc->start;
    binding->length = desc->length;
    binding->device_address = desc->device_address;
    binding->writable = (desc->flags & MMULAB_BINDING_WRITE) != 0;
    *out = binding;
    return MMULAB_OK;
}

static void detach(void *handle, void *binding_handle) {
    struct instance *instance = handle;
    struct binding *binding = binding_handle;
    mmulab_linux_scope scope = mmulab_linux_enter(instance->shim, binding->mm);
    kmirror_release(binding->mirror);
    mmdrop(binding->mm);
    mmulab_linux_leave(scope);
    free(binding);
}

static mmulab_status access_page(void *handle, void *binding_handle, uint64_t device_address, uint32_t flags,
                                 void *buffer, uint32_t length, mmulab_error *error) {
    struct instance *instance = handle;
    struct binding *binding = binding_handle;
    int write = (flags & MMULAB_ACCESS_WRITE) != 0;
    if (device_address < binding->device_address || device_address >= binding->device_address + binding->length) {
        return fail(error, MMULAB_ERR_FAULT, "device address outside the binding");
    }
    if (write && !binding->writable) return fail(error, MMULAB_ERR_FAULT, "write to a read-only binding");
    unsigned long address = (unsigned long)(binding->start + (device_address - binding->device_address));
    mmulab_linux_scope scope = mmulab_linux_enter(instance->shim, binding->mm);
    int ret = write ? kmirror_write(binding->mirror, address, buffer, length)
                    : kmirror_read(binding->mirror, address, buffer, length);
    mmulab_linux_leave(scope);
    return mmulab_linux_fail(error, ret, write ? "kmirror_write" : "kmirror_read");
}

static const char *stat_names[KMIRROR_STAT_COUNT] = {
    [KMIRROR_STAT_FAULTS] = "faults",
    [KMIRROR_STAT_RETRIES] = "fault retries",
    [KMIRROR_STAT_INVALIDATIONS] = "invalidations",
    [KMIRROR_STAT_REFUSED] = "refused non-blockable",
    [KMIRROR_STAT_READS] = "dma reads",
    [KMIRROR_STAT_WRITES] = "dma writes",
};

static uint32_t stat_count(void *handle) {
    (void)handle;
    return KMIRROR_STAT_COUNT;
}

static mmulab_status stat_get(void *handle, uint32_t index, const char **name, uint64_t *value) {
    struct instance *instance = handle;
    if (index >= KMIRROR_STAT_COUNT) return MMULAB_ERR_INVALID;
    *name = stat_names[index];
    *value = kmirror_device_stat(instance->device, (enum kmirror_stat)index);
    return MMULAB_OK;
}

static const mmulab_device_plugin descriptor = {
    .struct_size = sizeof(mmulab_device_plugin),
    .abi_major = MMULAB_ABI_MAJOR,
    .abi_minor = MMULAB_ABI_MINOR,
    .name = "kernel-mirror",
    .version = "1.0",
    .description = "A test_hmm-style mirror written as a Linux driver (interval notifier, xarray page table, "
                   "hmm_range_fault, kmap), run through the Linux shim. Options: bug=no-set-seq|no-read-retry|"
                   "mutex-in-nonblockable|keep-write-tag.",
    .capabilities = MMULAB_CAP_FAILS_NONBLOCKING,
    .create = create,
    .destroy = destroy,
    .attach = attach,
    .detach = detach,
    .access = access_page,
    .stat_count = stat_count,
    .stat_get = stat_get,
};

/* The one exported symbol. The shim needs ABI 1.4 (thread services). */
__attribute__((visibility("default"))) const mmulab_device_plugin *MMULAB_DEVICE_PLUGIN_ENTRY(uint16_t host_minor,
                                                                                               uint16_t *negotiated) {
    if (host_minor < MMULAB_LINUX_ABI_MINOR) return NULL;
    *negotiated = host_minor < MMULAB_ABI_MINOR ? host_minor : MMULAB_ABI_MINOR;
    return &descriptor;
}
