/*
 * A minimal device plugin in plain C: a mirror of the process's memory,
 * modelled on the Linux test_hmm "dmirror" device. Copy it to start your own.
 *
 * The device keeps, per binding, a page table with one entry per page: the
 * translation the primary MMU gave us and whether the device may write
 * through it. An interval notifier over each binding tells us when the
 * primary changes a page; we drop the entry then. A device access that
 * finds no entry faults it in with the canonical loop:
 *
 *     seq = read_begin(interval)          -- may sleep while invalidated
 *     fault_range(...)                    -- ask the primary for the page
 *     lock(device)
 *     if read_retry(interval, seq): unlock, start over
 *     install the entry
 *     unlock(device)
 *
 * and the invalidate callback takes the same lock and calls set_seq, so a
 * fault that read the primary before an invalidation cannot install after it.
 */
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mmulab_device_plugin.h"

#define PAGE 4096u

enum { ENTRY_VALID = 1, ENTRY_WRITE = 2, ENTRY_WRITTEN = 4 };

typedef struct entry {
    mmulab_pfn pfn;
    uint32_t state; /* ENTRY_* */
} entry;

typedef struct mirror mirror;

typedef struct binding {
    mirror *device;
    uint64_t address_space, start, length, device_address;
    int writable;
    mmulab_interval *interval;
    entry *pages; /* length / PAGE entries, guarded by device->lock */
} binding;

struct mirror {
    const mmulab_host *host;
    mmulab_lock *lock; /* a spin lock: DMA under it never sleeps */
    _Atomic uint64_t faults, retries, invalidations, refused, dma_reads, dma_writes;
};

/* [range-dependent] The interval's invalidate callback. */
static bool invalidate(void *data, mmulab_interval *interval, const mmulab_range *range, uint64_t current_seq) {
    binding *b = data;
    mirror *m = b->device;
    if (range->flags & MMULAB_RANGE_BLOCKABLE) {
        m->host->lock(m->lock);
    } else if (!m->host->trylock(m->lock)) {
        atomic_fetch_add(&m->refused, 1); /* non-blockable and busy: refuse, never wait */
        return false;
    }
    m->host->interval_set_seq(interval, current_seq);
    uint64_t first = 0, end = 0;
    mmulab_range_clamp(range, b->start, b->length, &first, &end);
    for (uint64_t a = first; a < end; a += PAGE) {
        entry *e = &b->pages[(a - b->start) / PAGE];
        if ((e->state & ENTRY_WRITTEN)) m->host->set_dirty(m->host->context, &e->pfn); /* the dirty state transfers */
        e->state = 0;
    }
    m->host->unlock(m->lock);
    atomic_fetch_add(&m->invalidations, 1);
    return true;
}

static const mmulab_interval_ops interval_ops = {
    .struct_size = sizeof(mmulab_interval_ops),
    .invalidate = invalidate,
};

static mmulab_status create(const mmulab_host *host, const char *options, void **instance, mmulab_error *error) {
    (void)options;
    mirror *m = calloc(1, sizeof *m);
    if (!m) {
        return mmulab_fail(error, MMULAB_ERR_NO_MEMORY, "out of memory");
    }
    m->host = host;
    m->lock = host->lock_create(host->context, "mirror-c device", MMULAB_LOCK_SPIN);
    *instance = m;
    return MMULAB_OK;
}

static void destroy(void *instance) {
    mirror *m = instance;
    m->host->lock_destroy(m->lock);
    free(m);
}

static mmulab_status attach(void *instance, const mmulab_binding_desc *desc, void **out, mmulab_error *error) {
    mirror *m = instance;
    if (desc->length == 0 || desc->start % PAGE || desc->length % PAGE) {
        return mmulab_fail(error, MMULAB_ERR_INVALID, "a binding must be page aligned and not empty");
    }
    binding *b = calloc(1, sizeof *b);
    entry *pages = calloc(desc->length / PAGE, sizeof *pages);
    if (!b || !pages) {
        free(b);
        free(pages);
        return mmulab_fail(error, MMULAB_ERR_NO_MEMORY, "out of memory");
    }
    *b = (binding){ .device = m, .address_space = desc->address_space, .start = desc->start, .length = desc->length,
                    .device_address = desc->device_address, .writable = (desc->flags & MMULAB_BINDING_WRITE) != 0,
                    .pages = pages };
    mmulab_status status = m->host->interval_insert(m->host->context, b->address_space, b->start, b->length,
                                                    &interval_ops, b, &b->interval, error);
    if (status != MMULAB_OK) {
        free(pages);
        free(b);
        return status;
    }
    *out = b;
    return MMULAB_OK;
}

static void detach(void *instance, void *handle) {
    (void)instance;
    binding *b = handle;
    mirror *m = b->device;
    m->host->interval_remove(m->host->context, b->interval); /* no callback runs after this */
    for (uint64_t i = 0; i < b->length / PAGE; i++) {
        if (b->pages[i].state & ENTRY_WRITTEN) m->host->set_dirty(m->host->context, &b->pages[i].pfn);
    }
    free(b->pages);
    free(b);
}

static mmulab_status access_page(void *instance, void *handle, uint64_t device_address, uint32_t flags, void *buffer,
                                 uint32_t length, mmulab_error *error) {
    mirror *m = instance;
    binding *b = handle;
    int write = (flags & MMULAB_ACCESS_WRITE) != 0;
    if (device_address < b->device_address || device_address >= b->device_address + b->length) {
        return mmulab_fail(error, MMULAB_ERR_FAULT, "device address outside the binding");
    }
    if (write && !b->writable) {
        return mmulab_fail(error, MMULAB_ERR_FAULT, "write to a read-only binding");
    }
    uint64_t page = (device_address - b->device_address) / PAGE;
    uint64_t address = b->start + page * PAGE;
    for (int attempt = 0; attempt < 1000; attempt++) {
        m->host->lock(m->lock);
        entry *e = &b->pages[page];
        if ((e->state & ENTRY_VALID) && (!write || (e->state & ENTRY_WRITE))) {
            if (write) {
                m->host->dma_write(m->host->context, b->address_space, &e->pfn, buffer, length);
                e->state |= ENTRY_WRITTEN;
                atomic_fetch_add(&m->dma_writes, 1);
            } else {
                m->host->dma_read(m->host->context, b->address_space, &e->pfn, buffer, length);
                atomic_fetch_add(&m->dma_reads, 1);
            }
            m->host->unlock(m->lock);
            return MMULAB_OK;
        }
        m->host->unlock(m->lock);

        /* The canonical fault loop. */
        if (attempt > 2) m->host->sleep_ns(m->host->context, 20000); /* let an invalidation finish */
        uint64_t seq = m->host->interval_read_begin(b->interval);
        mmulab_pfn pfn;
        mmulab_status status = m->host->fault_range(m->host->context, b->address_space, address, PAGE,
                                                    write ? MMULAB_FAULT_WRITE : 0, &pfn, error);
        if (status != MMULAB_OK) return status;
        atomic_fetch_add(&m->faults, 1);
        m->host->lock(m->lock);
        if (m->host->interval_read_retry(b->interval, seq)) {
            m->host->unlock(m->lock);
            atomic_fetch_add(&m->retries, 1);
            continue;
        }
        e->pfn = pfn;
        e->state = ENTRY_VALID | ((pfn.flags & MMULAB_PFN_WRITABLE) ? ENTRY_WRITE : 0);
        m->host->unlock(m->lock);
    }
    return mmulab_fail(error, MMULAB_ERR_BUSY, "could not fault the page in");
}

static const char *stat_names[] = { "faults", "fault retries", "invalidations", "refused non-blockable",
                                    "dma reads", "dma writes" };

static uint32_t stat_count(void *instance) {
    (void)instance;
    return sizeof stat_names / sizeof stat_names[0];
}

static mmulab_status stat_get(void *instance, uint32_t index, const char **name, uint64_t *value) {
    mirror *m = instance;
    _Atomic uint64_t *counters[] = { &m->faults, &m->retries, &m->invalidations, &m->refused, &m->dma_reads,
                                     &m->dma_writes };
    if (index >= stat_count(instance)) return MMULAB_ERR_INVALID;
    *name = stat_names[index];
    *value = atomic_load(counters[index]);
    return MMULAB_OK;
}

static const mmulab_device_plugin descriptor = {
    .struct_size = sizeof(mmulab_device_plugin),
    .abi_major = MMULAB_ABI_MAJOR,
    .abi_minor = MMULAB_ABI_MINOR,
    .name = "mirror-c",
    .version = "1.0",
    .description = "A test_hmm-style mirror device in plain C: a page table per binding, an interval notifier, the canonical fault loop.",
    .capabilities = MMULAB_CAP_FAILS_NONBLOCKING,
    .create = create,
    .destroy = destroy,
    .attach = attach,
    .detach = detach,
    .access = access_page,
    .stat_count = stat_count,
    .stat_get = stat_get,
};

/* The one exported symbol. */
__attribute__((visibility("default"))) const mmulab_device_plugin *MMULAB_DEVICE_PLUGIN_ENTRY(uint16_t host_minor,
                                                                                               uint16_t *negotiated) {
    *negotiated = host_minor < MMULAB_ABI_MINOR ? host_minor : MMULAB_ABI_MINOR;
    return &descriptor;
}
