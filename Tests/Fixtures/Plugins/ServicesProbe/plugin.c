/* Test fixture: a plugin that uses the host services a mirror does not:
 * pinned bindings (pin / unpin with dirty), a shrinker, page-table pages,
 * completions, logging, and (ABI 1.4) a thread of the host's, yield, the
 * host's clock and thread ids. The PluginHost tests check each one's effect.
 * Option "bad-threads": also hand the thread services bad input (a NULL
 * entry, a NULL and a repeated join), which the host must refuse or report. */
#include <stdatomic.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include "mmulab_device_plugin.h"

typedef struct probe {
    const mmulab_host *host;
    mmulab_shrinker *shrinker;
    mmulab_completion *done;
    uint64_t table_page;
    _Atomic uint64_t cached, scans;
    _Atomic uint64_t worker_runs, worker_id, creator_id, slept_ns, null_entry_refused;
} probe;

/* Runs on a thread of the host's: notes its id and sleeps 1 ms of host time. */
static void worker(void *argument) {
    probe *p = argument;
    atomic_store(&p->worker_id, p->host->thread_id(p->host->context));
    p->host->sleep_ns(p->host->context, 1000000);
    atomic_fetch_add(&p->worker_runs, 1);
}

static bool has_thread_services(const mmulab_host *host) {
    return host->abi_minor >= 4 && host->struct_size >= offsetof(mmulab_host, thread_id) + sizeof(host->thread_id);
}

static mmulab_status probe_threads(probe *p, const char *options, mmulab_error *error) {
    const mmulab_host *host = p->host;
    if (!has_thread_services(host)) return MMULAB_OK;
    uint64_t before = host->now_ns(host->context);
    mmulab_thread *thread = NULL;
    mmulab_status status = host->thread_create(host->context, "probe worker", worker, p, &thread, error);
    if (status != MMULAB_OK) return status;
    host->yield(host->context);
    host->thread_join(host->context, thread);
    atomic_store(&p->slept_ns, host->now_ns(host->context) - before);
    atomic_store(&p->creator_id, host->thread_id(host->context));
    if (strstr(options, "bad-threads")) {
        mmulab_thread *none = NULL;
        mmulab_error refused;
        if (host->thread_create(host->context, "no entry", NULL, p, &none, &refused) == MMULAB_ERR_INVALID && none == NULL)
            atomic_store(&p->null_entry_refused, 1);
        host->thread_join(host->context, NULL);
        host->thread_join(host->context, thread); /* already joined */
    }
    return MMULAB_OK;
}

typedef struct pinned {
    uint64_t address_space, start, length, device_address;
    mmulab_pfn *pfns;
} pinned;

static uint64_t count(void *data) { return atomic_load(&((probe *)data)->cached); }
static uint64_t scan(void *data, uint64_t n, bool can_block) {
    (void)can_block;
    probe *p = data;
    atomic_fetch_add(&p->scans, 1);
    uint64_t have = atomic_load(&p->cached);
    uint64_t freed = n < have ? n : have;
    atomic_fetch_sub(&p->cached, freed);
    return freed;
}
static const mmulab_shrinker_ops shrinker_ops = { .struct_size = sizeof(mmulab_shrinker_ops), .count = count, .scan = scan };

static mmulab_status create(const mmulab_host *host, const char *options, void **instance, mmulab_error *error) {
    probe *p = calloc(1, sizeof *p);
    p->host = host;
    atomic_store(&p->cached, 1000);
    mmulab_status status = host->alloc_page_table_page(host->context, &p->table_page);
    if (status != MMULAB_OK) return status;
    host->shrinker_register(host->context, "probe cache", &shrinker_ops, p, &p->shrinker);
    p->done = host->completion_create(host->context, "probe");
    host->completion_complete(p->done);
    if (!host->completion_wait(p->done, 1000000)) host->log(host->context, MMULAB_LOG_ERROR, "completion lost");
    status = probe_threads(p, options, error);
    if (status != MMULAB_OK) return status;
    host->log(host->context, MMULAB_LOG_INFO, "probe created");
    *instance = p;
    return MMULAB_OK;
}

static void destroy(void *instance) {
    probe *p = instance;
    p->host->shrinker_unregister(p->host->context, p->shrinker);
    p->host->completion_destroy(p->done);
    p->host->free_page_table_page(p->host->context, p->table_page);
    free(p);
}

static mmulab_status attach(void *instance, const mmulab_binding_desc *desc, void **out, mmulab_error *error) {
    probe *p = instance;
    pinned *b = calloc(1, sizeof *b);
    *b = (pinned){ desc->address_space, desc->start, desc->length, desc->device_address,
                   calloc(desc->length / 4096, sizeof(mmulab_pfn)) };
    mmulab_status status = p->host->pin(p->host->context, b->address_space, b->start, b->length,
                                        MMULAB_FAULT_WRITE, b->pfns, error);
    if (status != MMULAB_OK) {
        free(b->pfns);
        free(b);
        return status;
    }
    *out = b;
    return MMULAB_OK;
}

static void detach(void *instance, void *binding) {
    probe *p = instance;
    pinned *b = binding;
    p->host->unpin(p->host->context, b->pfns, b->length / 4096, true); /* the device wrote: dirty */
    free(b->pfns);
    free(b);
}

static mmulab_status access_page(void *instance, void *binding, uint64_t device_address, uint32_t flags, void *buffer,
                                 uint32_t length, mmulab_error *error) {
    (void)error;
    probe *p = instance;
    pinned *b = binding;
    mmulab_pfn *pfn = &b->pfns[(device_address - b->device_address) / 4096];
    if (flags & MMULAB_ACCESS_WRITE) p->host->dma_write(p->host->context, b->address_space, pfn, buffer, length);
    else p->host->dma_read(p->host->context, b->address_space, pfn, buffer, length);
    return MMULAB_OK;
}

static const char *names[] = { "shrinker scans", "cached objects", "worker runs", "worker thread id", "creator thread id",
                               "worker slept ns", "null entry refused" };
static uint32_t stat_count(void *instance) { (void)instance; return 7; }
static mmulab_status stat_get(void *instance, uint32_t index, const char **name, uint64_t *value) {
    probe *p = instance;
    _Atomic uint64_t *values[] = { &p->scans, &p->cached, &p->worker_runs, &p->worker_id, &p->creator_id, &p->slept_ns,
                                   &p->null_entry_refused };
    if (index > 6) return MMULAB_ERR_INVALID;
    *name = names[index];
    *value = atomic_load(values[index]);
    return MMULAB_OK;
}

static const mmulab_device_plugin descriptor = {
    .struct_size = sizeof(mmulab_device_plugin), .abi_major = MMULAB_ABI_MAJOR, .abi_minor = MMULAB_ABI_MINOR,
    .name = "services-probe", .version = "1", .description = "pins, a shrinker, page-table pages, completions, a host thread",
    .create = create, .destroy = destroy, .attach = attach, .detach = detach, .access = access_page,
    .stat_count = stat_count, .stat_get = stat_get,
};
__attribute__((visibility("default"))) const mmulab_device_plugin *MMULAB_DEVICE_PLUGIN_ENTRY(uint16_t host_minor, uint16_t *negotiated) {
    *negotiated = host_minor < MMULAB_ABI_MINOR ? host_minor : MMULAB_ABI_MINOR;
    return &descriptor;
}
