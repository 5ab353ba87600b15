/* Test fixture: a plugin that breaks the notifier contract on purpose and
 * says so. Each binding subscribes to its whole address space. Options:
 *   retry=1    answer retry to every invalidate_range_start, blockable or not
 *              (only a non-blockable start may fail: the lab reports "retry
 *              from a blockable start");
 *   confess=1  log MMULAB_LOG_MISBEHAVING for every start it answers retry to
 *              (the header promises the host reports it with the run's
 *              violations);
 *   lock=1     take its sleeping lock ("misbehaving device lock") in every
 *              start, blockable or not (a context violation when not).
 * Its device reaches nothing: every access fails, so the lab's workloads on
 * it never succeed (an idle actor). */
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "mmulab_device_plugin.h"

typedef struct misbehaving {
    const mmulab_host *host;
    int retry, confess, lock;
    mmulab_lock *device_lock;
    _Atomic uint64_t refusals;
} misbehaving;

typedef struct binding {
    misbehaving *device;
    mmulab_subscription *subscription;
} binding;

static mmulab_status start(void *data, const mmulab_range *range) {
    misbehaving *m = data;
    if (m->lock) {
        m->host->lock(m->device_lock); /* BUG when the range is not blockable: a sleeping lock */
        m->host->unlock(m->device_lock);
    }
    if (!m->retry) return MMULAB_OK;
    atomic_fetch_add_explicit(&m->refusals, 1, memory_order_relaxed);
    if (m->confess && (range->flags & MMULAB_RANGE_BLOCKABLE)) {
        char message[160];
        snprintf(message, sizeof message, "answered retry to a blockable start of [0x%llx, 0x%llx)",
                 (unsigned long long)range->start, (unsigned long long)range->end);
        m->host->log(m->host->context, MMULAB_LOG_MISBEHAVING, message);
    }
    return MMULAB_RETRY;
}
static void end(void *data, const mmulab_range *range) { (void)data; (void)range; }
static const mmulab_subscriber_ops ops = { .struct_size = sizeof(mmulab_subscriber_ops),
                                           .invalidate_range_start = start, .invalidate_range_end = end };

static mmulab_status create(const mmulab_host *host, const char *options, void **instance, mmulab_error *error) {
    misbehaving *m = calloc(1, sizeof *m);
    m->host = host;
    char copy[256];
    snprintf(copy, sizeof copy, "%s", options ? options : "");
    for (char *save = NULL, *pair = strtok_r(copy, ",", &save); pair; pair = strtok_r(NULL, ",", &save)) {
        if (strcmp(pair, "retry=1") == 0) m->retry = 1;
        else if (strcmp(pair, "confess=1") == 0) m->confess = 1;
        else if (strcmp(pair, "lock=1") == 0) m->lock = 1;
        else {
            snprintf(error->message, sizeof error->message, "unknown option '%s' (options: retry=1, confess=1, lock=1)", pair);
            free(m);
            return MMULAB_ERR_INVALID;
        }
    }
    m->device_lock = host->lock_create(host->context, "misbehaving device lock", MMULAB_LOCK_SLEEPING);
    *instance = m;
    return MMULAB_OK;
}
static void destroy(void *instance) {
    misbehaving *m = instance;
    m->host->lock_destroy(m->device_lock);
    free(m);
}
static mmulab_status attach(void *instance, const mmulab_binding_desc *desc, void **out, mmulab_error *error) {
    binding *b = calloc(1, sizeof *b);
    b->device = instance;
    mmulab_status status = b->device->host->subscribe(b->device->host->context, desc->address_space, &ops, instance, &b->subscription, error);
    if (status != MMULAB_OK) {
        free(b);
        return status;
    }
    *out = b;
    return MMULAB_OK;
}
static void detach(void *instance, void *handle) {
    (void)instance;
    binding *b = handle;
    b->device->host->unsubscribe(b->device->host->context, b->subscription);
    free(b);
}
static mmulab_status access_page(void *instance, void *binding, uint64_t address, uint32_t flags, void *buffer,
                                 uint32_t length, mmulab_error *error) {
    (void)instance; (void)binding; (void)address; (void)flags; (void)buffer; (void)length;
    snprintf(error->message, sizeof error->message, "this device reaches nothing");
    return MMULAB_ERR_NOT_SUPPORTED;
}
static const char *names[] = { "refusals" };
static uint32_t stat_count(void *instance) { (void)instance; return 1; }
static mmulab_status stat_get(void *instance, uint32_t index, const char **name, uint64_t *value) {
    misbehaving *m = instance;
    if (index > 0) return MMULAB_ERR_INVALID;
    *name = names[index];
    *value = atomic_load(&m->refusals);
    return MMULAB_OK;
}
static const mmulab_device_plugin descriptor = {
    .struct_size = sizeof(mmulab_device_plugin), .abi_major = MMULAB_ABI_MAJOR, .abi_minor = MMULAB_ABI_MINOR,
    .name = "misbehaving", .version = "1", .description = "breaks the contract on purpose (options: retry=1, confess=1, lock=1)",
    .create = create, .destroy = destroy, .attach = attach, .detach = detach, .access = access_page,
    .stat_count = stat_count, .stat_get = stat_get,
};
__attribute__((visibility("default"))) const mmulab_device_plugin *MMULAB_DEVICE_PLUGIN_ENTRY(uint16_t host_minor, uint16_t *negotiated) {
    *negotiated = host_minor < MMULAB_ABI_MINOR ? host_minor : MMULAB_ABI_MINOR;
    return &descriptor;
}
