/* The body of the fixture plugins that misuse host services, leave things
 * behind, take locks in the wrong order or crash: a working mirror device
 * (a page table per binding, an interval notifier, the canonical fault
 * loop, a sleeping device lock per binding) with hooks where each fixture
 * puts its one mistake. Each fixture's plugin.c defines what it breaks,
 * then includes this file:
 *
 *   FIXTURE_NAME            the plugin's name (required)
 *   MISUSE_CREATE(d)        statements at the end of create (d: the device)
 *   MISUSE_ATTACH(d, b)     statements at the end of attach (b: the binding)
 *   MISUSE_ACCESS(d, b, e)  statements after the instance's first successful access (e: the entry used)
 *   MISUSE_DETACH(d, b)     statements at the start of detach
 *   MISUSE_DESTROY(d)       statements at the start of destroy
 *   MISUSE_INVALIDATE(b, interval, seq)  statements in the interval callback, device lock held
 *   SKIP_INTERVAL_REMOVE    detach does not remove the binding's interval
 *   PIN_PAGES n             attach pins the binding's first n pages (b->pinned), detach unpins them
 *   SKIP_UNPIN              detach does not unpin them
 *   FAULT_UNDER_LOCK        access holds the device lock across fault_range (the classic inversion)
 *   SUBSCRIBE               attach also subscribes to the whole space (whole_space_ops; b->subscription)
 *   WHOLE_SPACE_START       statements at the start of that subscription's invalidate_range_start
 */
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "mmulab_device_plugin.h"

#define PAGE 4096u

#ifndef MISUSE_CREATE
#define MISUSE_CREATE(d)
#endif
#ifndef MISUSE_ATTACH
#define MISUSE_ATTACH(d, b)
#endif
#ifndef MISUSE_ACCESS
#define MISUSE_ACCESS(d, b, e)
#endif
#ifndef MISUSE_DETACH
#define MISUSE_DETACH(d, b)
#endif
#ifndef MISUSE_DESTROY
#define MISUSE_DESTROY(d)
#endif
#ifndef MISUSE_INVALIDATE
#define MISUSE_INVALIDATE(b, interval, seq)
#endif
#ifndef PIN_PAGES
#define PIN_PAGES 0
#endif
#ifndef WHOLE_SPACE_START
#define WHOLE_SPACE_START
#endif

typedef struct entry {
    mmulab_pfn pfn;
    int valid;
} entry;

typedef struct device {
    const mmulab_host *host;
    void *ctx;
    _Atomic int misused;
    mmulab_lock *spare_lock;
    mmulab_completion *spare_completion;
    mmulab_shrinker *shrinker;
    mmulab_device_memory *vram;
    uint64_t table_page;
    _Atomic uint64_t accesses, invalidations;
} device;

typedef struct binding {
    device *dev;
    mmulab_binding_desc desc;
    mmulab_interval *interval;
    mmulab_subscription *subscription;
    mmulab_lock *lock; /* the device lock: a sleeping lock */
    entry *pages;
    mmulab_pfn pinned[PIN_PAGES > 0 ? PIN_PAGES : 1];
} binding;

static void set_error(mmulab_error *error, mmulab_status status, const char *message) {
    (void)mmulab_fail(error, status, "%s", message);
}

static bool invalidate(void *data, mmulab_interval *interval, const mmulab_range *range, uint64_t current_seq) {
    binding *b = data;
    device *d = b->dev;
    if (range->flags & MMULAB_RANGE_BLOCKABLE) {
        d->host->lock(b->lock);
    } else if (!d->host->trylock(b->lock)) {
        return false; /* non-blockable and busy: refuse, never wait */
    }
    d->host->interval_set_seq(interval, current_seq);
    MISUSE_INVALIDATE(b, interval, current_seq)
    uint64_t first = range->start > b->desc.start ? range->start : b->desc.start;
    uint64_t end = range->end < b->desc.start + b->desc.length ? range->end : b->desc.start + b->desc.length;
    for (uint64_t a = first; a < end; a += PAGE) b->pages[(a - b->desc.start) / PAGE].valid = 0;
    d->host->unlock(b->lock);
    atomic_fetch_add(&d->invalidations, 1);
    return true;
}

static const mmulab_interval_ops interval_ops = { .struct_size = sizeof(mmulab_interval_ops), .invalidate = invalidate };

static mmulab_status whole_space_start(void *data, const mmulab_range *range) {
    (void)data; (void)range;
    WHOLE_SPACE_START
    return MMULAB_OK;
}
static void whole_space_end(void *data, const mmulab_range *range) { (void)data; (void)range; }
static const mmulab_subscriber_ops whole_space_ops = { .struct_size = sizeof(mmulab_subscriber_ops),
                                                       .invalidate_range_start = whole_space_start,
                                                       .invalidate_range_end = whole_space_end };

static uint64_t shrinker_count(void *data) { (void)data; return 0; }
static uint64_t shrinker_scan(void *data, uint64_t count, bool can_block) { (void)data; (void)count; (void)can_block; return 0; }
static const mmulab_shrinker_ops shrinker_ops = { .struct_size = sizeof(mmulab_shrinker_ops), .count = shrinker_count, .scan = shrinker_scan };

static mmulab_status create(const mmulab_host *host, const char *options, void **instance, mmulab_error *error) {
    (void)options;
    device *d = calloc(1, sizeof *d);
    if (!d) {
        set_error(error, MMULAB_ERR_NO_MEMORY, "out of memory");
        return MMULAB_ERR_NO_MEMORY;
    }
    d->host = host;
    d->ctx = host->context;
    MISUSE_CREATE(d)
    *instance = d;
    return MMULAB_OK;
}

static void destroy(void *instance) {
    device *d = instance;
    MISUSE_DESTROY(d)
    free(d);
}

static mmulab_status attach(void *instance, const mmulab_binding_desc *desc, void **out, mmulab_error *error) {
    device *d = instance;
    if (desc->length == 0 || desc->start % PAGE || desc->length % PAGE) {
        set_error(error, MMULAB_ERR_INVALID, "a binding must be page aligned and not empty");
        return MMULAB_ERR_INVALID;
    }
    binding *b = calloc(1, sizeof *b);
    b->dev = d;
    b->desc = *desc;
    b->pages = calloc(desc->length / PAGE, sizeof *b->pages);
    b->lock = d->host->lock_create(d->ctx, "device lock", MMULAB_LOCK_SLEEPING);
    mmulab_status status = d->host->interval_insert(d->ctx, desc->address_space, desc->start, desc->length, &interval_ops, b,
                                                    &b->interval, error);
    if (status != MMULAB_OK) {
        d->host->lock_destroy(b->lock);
        free(b->pages);
        free(b);
        return status;
    }
#ifdef SUBSCRIBE
    d->host->subscribe(d->ctx, desc->address_space, &whole_space_ops, b, &b->subscription, error);
#endif
#if PIN_PAGES > 0
    status = d->host->pin(d->ctx, desc->address_space, desc->start, PIN_PAGES * PAGE, MMULAB_FAULT_WRITE, b->pinned, error);
    if (status != MMULAB_OK) return status;
#endif
    MISUSE_ATTACH(d, b)
    *out = b;
    return MMULAB_OK;
}

static void detach(void *instance, void *handle) {
    device *d = instance;
    binding *b = handle;
    MISUSE_DETACH(d, b)
#if PIN_PAGES > 0 && !defined(SKIP_UNPIN)
    d->host->unpin(d->ctx, b->pinned, PIN_PAGES, true);
#endif
#ifndef SKIP_INTERVAL_REMOVE
    d->host->interval_remove(d->ctx, b->interval); /* no callback runs after this */
#endif
    d->host->lock_destroy(b->lock);
    free(b->pages);
    free(b);
}

static mmulab_status access_page(void *instance, void *handle, uint64_t device_address, uint32_t flags, void *buffer,
                                 uint32_t length, mmulab_error *error) {
    device *d = instance;
    binding *b = handle;
    int write = (flags & MMULAB_ACCESS_WRITE) != 0;
    if (device_address < b->desc.device_address || device_address >= b->desc.device_address + b->desc.length) {
        set_error(error, MMULAB_ERR_FAULT, "device address outside the binding");
        return MMULAB_ERR_FAULT;
    }
    uint64_t page = (device_address - b->desc.device_address) / PAGE;
    uint64_t address = b->desc.start + page * PAGE;
    for (int attempt = 0; attempt < 1000; attempt++) {
        d->host->lock(b->lock);
        entry *e = &b->pages[page];
        if (e->valid && (!write || (e->pfn.flags & MMULAB_PFN_WRITABLE))) {
            if (write) {
                d->host->dma_write(d->ctx, b->desc.address_space, &e->pfn, buffer, length);
                d->host->set_dirty(d->ctx, &e->pfn);
            } else {
                d->host->dma_read(d->ctx, b->desc.address_space, &e->pfn, buffer, length);
            }
            d->host->unlock(b->lock);
            atomic_fetch_add(&d->accesses, 1);
            if (atomic_exchange(&d->misused, 1) == 0) {
                MISUSE_ACCESS(d, b, e)
            }
            return MMULAB_OK;
        }
        d->host->unlock(b->lock);
        if (attempt > 2) d->host->sleep_ns(d->ctx, 20000); /* let an invalidation finish */
        uint64_t seq = d->host->interval_read_begin(b->interval);
        mmulab_pfn pfn;
#ifdef FAULT_UNDER_LOCK
        /* BUG: the device lock is held across fault_range, which takes the
         * mmap lock and may reclaim, while the invalidate callback takes the
         * same lock under the mmap lock and from reclaim. */
        d->host->lock(b->lock);
        mmulab_status status = d->host->fault_range(d->ctx, b->desc.address_space, address, PAGE, write ? MMULAB_FAULT_WRITE : 0, &pfn, error);
        if (status != MMULAB_OK) {
            d->host->unlock(b->lock);
            return status;
        }
#else
        /* The canonical fault loop: fault first, then lock and check. */
        mmulab_status status = d->host->fault_range(d->ctx, b->desc.address_space, address, PAGE, write ? MMULAB_FAULT_WRITE : 0, &pfn, error);
        if (status != MMULAB_OK) return status;
        d->host->lock(b->lock);
#endif
        if (d->host->interval_read_retry(b->interval, seq)) {
            d->host->unlock(b->lock);
            continue;
        }
        e->pfn = pfn;
        e->valid = 1;
        d->host->unlock(b->lock);
    }
    set_error(error, MMULAB_ERR_BUSY, "could not fault the page in");
    return MMULAB_ERR_BUSY;
}

static const char *stat_names[] = { "accesses", "invalidations" };
static uint32_t stat_count(void *instance) { (void)instance; return 2; }
static mmulab_status stat_get(void *instance, uint32_t index, const char **name, uint64_t *value) {
    device *d = instance;
    if (index > 1) return MMULAB_ERR_INVALID;
    *name = stat_names[index];
    *value = index == 0 ? atomic_load(&d->accesses) : atomic_load(&d->invalidations);
    return MMULAB_OK;
}

static const mmulab_device_plugin descriptor = {
    .struct_size = sizeof(mmulab_device_plugin), .abi_major = MMULAB_ABI_MAJOR, .abi_minor = MMULAB_ABI_MINOR,
    .name = FIXTURE_NAME, .version = "1", .description = "a mirror device with one deliberate mistake (a test fixture)",
    .capabilities = MMULAB_CAP_FAILS_NONBLOCKING,
    .create = create, .destroy = destroy, .attach = attach, .detach = detach, .access = access_page,
    .stat_count = stat_count, .stat_get = stat_get,
};

__attribute__((visibility("default"))) const mmulab_device_plugin *MMULAB_DEVICE_PLUGIN_ENTRY(uint16_t host_minor, uint16_t *negotiated) {
    *negotiated = host_minor < MMULAB_ABI_MINOR ? host_minor : MMULAB_ABI_MINOR;
    (void)whole_space_ops; (void)shrinker_ops;
    return &descriptor;
}
