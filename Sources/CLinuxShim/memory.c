/*
 * mmulab Linux shim: kmalloc and friends (<linux/slab.h>).
 *
 * Each block carries a header: a live/freed marker (so kfree of a foreign
 * or freed pointer is caught, as far as the C library's reuse lets it
 * be), its size (so kfree can release the locks that lived in it), the
 * device it was charged to, and the host frames it was charged in reclaim
 * context.
 */
#include <stdlib.h>
#include <string.h>

#include "internal.h"

#include <linux/slab.h>

#define ALIVE 0x6b6d616c6c6f6321ull /* "kmalloc!" */
#define FREED 0x6b667265656421ddull

#define ZERO_SIZE_PTR ((void *)16)

struct header {
    u64 marker;
    size_t size;
    struct mmulab_linux_device *device;
    u64 *frames; /* host page-table pages charged (reclaim context) */
    u32 frame_count;
    u32 reserved;
    u64 padding; /* keeps the block 16-byte aligned, as the C library's */
};

_Static_assert(sizeof(struct header) % 16 == 0, "kmalloc blocks keep malloc's alignment");

/* In reclaim context, charges `size` to the host's bounded reserve, a
 * frame per 4 KiB started. False (nothing charged) when the reserve is
 * spent. */
static bool charge(struct mmulab_linux_device *device, size_t size, struct header *header) {
    u32 count = (u32)((size + PAGE_SIZE - 1) / PAGE_SIZE);
    if (count == 0) count = 1;
    u64 *frames = calloc(count, sizeof *frames);
    if (!frames) return false;
    for (u32 i = 0; i < count; i++) {
        if (device->host->alloc_page_table_page(device->ctx, &frames[i]) != MMULAB_OK) {
            while (i > 0) device->host->free_page_table_page(device->ctx, frames[--i]);
            free(frames);
            return false;
        }
    }
    header->frames = frames;
    header->frame_count = count;
    return true;
}

void *mmulab_linux_kmalloc(size_t size, gfp_t gfp, const char *file, int line) {
    struct mmulab_linux_device *device = shim_device();
    if (gfpflags_allow_blocking(gfp)) shim_might_sleep(device, "a sleeping allocation (GFP_KERNEL)", file, line);
    if (size == 0) return ZERO_SIZE_PTR;
    if (size > (size_t)1 << 40) return NULL;
    struct header charged = { .frames = NULL, .frame_count = 0 };
    if (device && device->host->in_reclaim(device->ctx) && !charge(device, size, &charged)) {
        if (!(gfp & __GFP_NOWARN)) {
            shim_log(device, MMULAB_LOG_WARNING,
                     "kmalloc(%zu) failed at %s:%d: reclaim context and the host's reserve is spent", size, file,
                     line);
        }
        return NULL;
    }
    struct header *header = (gfp & __GFP_ZERO) ? calloc(1, sizeof *header + size) : malloc(sizeof *header + size);
    if (!header) {
        for (u32 i = 0; i < charged.frame_count; i++) device->host->free_page_table_page(device->ctx, charged.frames[i]);
        free(charged.frames);
        return NULL;
    }
    *header = (struct header){ .marker = ALIVE, .size = size, .device = device, .frames = charged.frames,
                               .frame_count = charged.frame_count };
    if (device) {
        __atomic_fetch_add(&device->allocations, 1, __ATOMIC_RELAXED);
        __atomic_fetch_add(&device->allocated_bytes, (long)size, __ATOMIC_RELAXED);
    }
    return header + 1;
}

/* The header of a live block, or NULL (reported) if `pointer` is not one. */
static struct header *live_header(const void *pointer, const char *what, const char *file, int line) {
    struct header *header = (struct header *)pointer - 1;
    if (header->marker != ALIVE) {
        shim_report(shim_device(), "BUG", what, file, line, "kfree");
        return NULL;
    }
    return header;
}

void mmulab_linux_kfree(const void *pointer, const char *file, int line) {
    if (!pointer || pointer == ZERO_SIZE_PTR) return;
    struct header *header = live_header(pointer, "kfree of memory kmalloc did not return, or already freed", file, line);
    if (!header) return;
    struct mmulab_linux_device *device = header->device;
    if (device) {
        /* The locks, completions and wait queues that lived in the block go with it. */
        shim_objects_release_range(device, pointer, header->size, file, line);
        for (u32 i = 0; i < header->frame_count; i++) device->host->free_page_table_page(device->ctx, header->frames[i]);
        __atomic_fetch_sub(&device->allocations, 1, __ATOMIC_RELAXED);
        __atomic_fetch_sub(&device->allocated_bytes, (long)header->size, __ATOMIC_RELAXED);
    }
    free(header->frames);
    header->marker = FREED;
    free(header);
}

void *mmulab_linux_krealloc(const void *pointer, size_t size, gfp_t gfp, const char *file, int line) {
    if (!pointer || pointer == ZERO_SIZE_PTR) return mmulab_linux_kmalloc(size, gfp, file, line);
    struct header *header = live_header(pointer, "krealloc of memory kmalloc did not return, or already freed", file, line);
    if (!header) return NULL;
    if (size == 0) {
        mmulab_linux_kfree(pointer, file, line);
        return ZERO_SIZE_PTR;
    }
    void *moved = mmulab_linux_kmalloc(size, gfp & ~__GFP_ZERO, file, line);
    if (!moved) return NULL; /* the old block stays, as in Linux */
    size_t kept = header->size < size ? header->size : size;
    memcpy(moved, pointer, kept);
    if (size > kept && (gfp & __GFP_ZERO)) memset((char *)moved + kept, 0, size - kept);
    /* Locks that lived in the old block live on in the new one. */
    if (header->device) shim_objects_move_range(header->device, pointer, moved, kept);
    mmulab_linux_kfree(pointer, file, line);
    return moved;
}

void *mmulab_linux_kmalloc_array(size_t n, size_t size, gfp_t gfp, const char *file, int line) {
    size_t bytes;
    if (__builtin_mul_overflow(n, size, &bytes)) return NULL;
    return mmulab_linux_kmalloc(bytes, gfp, file, line);
}

void *mmulab_linux_kmemdup(const void *source, size_t length, gfp_t gfp, const char *file, int line) {
    void *copy = mmulab_linux_kmalloc(length, gfp & ~__GFP_ZERO, file, line);
    if (copy && length > 0) memcpy(copy, source, length);
    return copy;
}
