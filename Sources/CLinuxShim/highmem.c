/*
 * mmulab Linux shim: kmap and friends (<linux/highmem.h>): a mapping is a
 * page-sized buffer filled by a checked DMA read of the page and written
 * back by a checked DMA write if it changed.
 *
 * Mappings are per thread, on a stack of at most 16 (Linux's
 * KM_MAX_IDX): kunmap_local unmaps by address and must take the most
 * recent one; kunmap unmaps the calling thread's most recent kmap of the
 * page.
 */
#include <stdlib.h>
#include <string.h>

#include "internal.h"

#include <linux/highmem.h>
#include <linux/sched.h>

#define MAX_MAPPINGS 16

struct mapping {
    struct page *page;
    struct mmulab_linux_device *device;
    uint64_t address_space;
    mmulab_pfn pfn;
    bool local;
    unsigned char data[PAGE_SIZE];
    unsigned char original[PAGE_SIZE];
};

static _Thread_local struct mapping *mappings[MAX_MAPPINGS];
static _Thread_local int depth;

void *mmulab_linux_kmap(struct page *page, bool local, const char *file, int line) {
    struct mmulab_linux_device *device = shim_require_device("kmap");
    if (!local) shim_might_sleep(device, "kmap()", file, line);
    if (depth == MAX_MAPPINGS) {
        shim_report(device, "BUG", "more than 16 kmap mappings held by one thread", file, line, "kmap");
        return NULL;
    }
    struct mapping *mapping = malloc(sizeof *mapping);
    if (!mapping) {
        shim_report(device, "BUG", "out of memory for a kmap mapping", file, line, "kmap");
        return NULL;
    }
    if (!shim_page_read(page, &mapping->address_space, &mapping->pfn, true)) {
        free(mapping);
        shim_report(device, "BUG", "kmap of a struct page pointer no hmm_range_fault or pin_user_pages returned", file,
                    line, "kmap");
        return NULL;
    }
    mapping->page = page;
    mapping->device = shim_page_device(page);
    mapping->local = local;
    /* The lab's pages carry a payload at their start; the rest reads as zeroes. */
    memset(mapping->data, 0, sizeof mapping->data);
    const mmulab_host *host = mapping->device->host;
    host->dma_read(mapping->device->ctx, mapping->address_space, &mapping->pfn, mapping->data, PAGE_SIZE);
    memcpy(mapping->original, mapping->data, PAGE_SIZE);
    mappings[depth++] = mapping;
    return mapping->data;
}

/* Writes back what changed and lets the page go. */
static void unmap(int index) {
    struct mapping *mapping = mappings[index];
    for (int i = index; i < depth - 1; i++) mappings[i] = mappings[i + 1];
    mappings[--depth] = NULL;
    if (memcmp(mapping->data, mapping->original, PAGE_SIZE) != 0) {
        const mmulab_host *host = mapping->device->host;
        host->dma_write(mapping->device->ctx, mapping->address_space, &mapping->pfn, mapping->data, PAGE_SIZE);
    }
    shim_page_release_hold(mapping->page);
    free(mapping);
}

void mmulab_linux_kunmap(struct page *page, const char *file, int line) {
    for (int i = depth - 1; i >= 0; i--) {
        if (mappings[i]->page == page && !mappings[i]->local) {
            unmap(i);
            return;
        }
    }
    shim_report(shim_device(), "BUG", "kunmap of a page this thread has not kmapped", file, line, "kunmap");
}

void mmulab_linux_kunmap_local(const void *address, const char *file, int line) {
    const unsigned char *at = address;
    for (int i = depth - 1; i >= 0; i--) {
        if (at >= mappings[i]->data && at < mappings[i]->data + PAGE_SIZE) {
            if (i != depth - 1 || !mappings[i]->local) {
                shim_report(shim_device(), "BUG",
                            "kunmap_local out of order (not the most recent kmap_local_page of the thread)", file,
                            line, "kunmap_local");
            }
            unmap(i);
            return;
        }
    }
    shim_report(shim_device(), "BUG", "kunmap_local of an address no kmap_local_page of this thread returned", file,
                line, "kunmap_local");
}
