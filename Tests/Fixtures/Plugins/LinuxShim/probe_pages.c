/*
 * The Linux shim probe's pages: the pin variants (pin_user_pages_fast,
 * pin_user_pages_remote with and without the lock), unpin_user_page, the
 * page and folio helpers (set_page_dirty_lock, folio_mark_dirty,
 * mark_page_accessed, is_device_private_page...), and the highmem
 * helpers (memcpy_from_page, memcpy_to_page, clear_highpage,
 * copy_highpage). Pages are named as probe_page_at says.
 */
#include <linux/errno.h>
#include <linux/highmem.h>
#include <linux/kernel.h>
#include <linux/mm.h>
#include <linux/sched.h>

#include "probe.h"
#include "probe_state.h"

long probe_pin_variant(struct probe *probe, struct probe_command *c) {
    u64 *a = c->arguments;
    struct mm_struct *mm = probe->notifier.mm; /* the probe's, whatever current->mm is */
    long ret;
    int locked;

    /* pin_user_pages_fast takes an int: a negative count is its business. */
    if (probe->pinned_count || (a[3] == PROBE_PIN_FAST ? (s64)a[1] > PINNED : a[1] > PINNED)) return -EINVAL;
    switch (a[3]) {
    case PROBE_PIN_FAST:
        ret = pin_user_pages_fast(a[0], (int)(s64)a[1], (unsigned int)a[2], probe->pinned);
        break;
    case PROBE_PIN_REMOTE:
        mmap_read_lock(mm);
        ret = pin_user_pages_remote(mm, a[0], a[1], (unsigned int)a[2], probe->pinned, NULL);
        mmap_read_unlock(mm);
        break;
    case PROBE_PIN_REMOTE_LOCKED:
        mmap_read_lock(mm);
        locked = 1;
        ret = pin_user_pages_remote(mm, a[0], a[1], (unsigned int)a[2], probe->pinned, &locked);
        /* The callee may have dropped the lock (and said so). */
        if (locked) mmap_read_unlock(mm);
        a[1] = (u64)locked;
        break;
    case PROBE_PIN_REMOTE_UNLOCKED:
        locked = 0;
        ret = pin_user_pages_remote(mm, a[0], a[1], (unsigned int)a[2], probe->pinned, &locked);
        if (locked) mmap_read_unlock(mm);
        a[1] = (u64)locked;
        break;
    case PROBE_PIN_REMOTE_NO_LOCK:
        ret = pin_user_pages_remote(mm, a[0], a[1], (unsigned int)a[2], probe->pinned, NULL);
        break;
    default: return -EINVAL;
    }
    if (ret > 0) {
        probe->pinned_count = (unsigned long)ret;
        probe->slots[7] = probe->pinned[0];
    }
    return ret;
}

long probe_unpin_one(struct probe *probe, struct probe_command *c) {
    u64 *a = c->arguments;

    if (a[0] >= probe->pinned_count) return -EINVAL;
    unpin_user_page(probe->pinned[a[0]]);
    if (a[1]) probe->pinned_count = 0;
    return 0;
}

long probe_page(struct probe *probe, struct probe_command *c) {
    u64 *a = c->arguments;
    struct page *page = probe_page_at(probe, a[0]);
    struct page *second;
    long bits = 0;

    if (!page) return -ENOENT;
    switch (a[1]) {
    case PROBE_PAGE_DIRTY_LOCK: return set_page_dirty_lock(page);
    case PROBE_PAGE_FOLIO_DIRTY: return folio_mark_dirty(page_folio(page));
    case PROBE_PAGE_ACCESSED: mark_page_accessed(page); return 0;
    case PROBE_PAGE_FOLIO_ACCESSED: folio_mark_accessed(page_folio(page)); return 0;
    case PROBE_PAGE_DEVICE_PRIVATE: return is_device_private_page(page);
    case PROBE_PAGE_ZONE_DEVICE: return is_zone_device_page(page);
    case PROBE_PAGE_FOLIO_SAME:
        second = probe_page_at(probe, a[2]);
        if (!second) return -ENOENT;
        return page_folio(page) == page_folio(second);
    case PROBE_PAGE_GET: get_page(page); return 0;
    case PROBE_PAGE_PUT: put_page(page); return 0;
    case PROBE_PAGE_FOLIO_GET: folio_get(page_folio(page)); return 0;
    case PROBE_PAGE_FOLIO_PUT: folio_put(page_folio(page)); return 0;
    case PROBE_PAGE_GET_LOCKED:
        spin_lock(&probe->lock);
        get_page(page);
        spin_unlock(&probe->lock);
        return 0;
    case PROBE_PAGE_FOLIO_CHECKS:
        if (folio_page(page_folio(page), 0) == page) bits |= 1;
        if (folio_pfn(page_folio(page)) == page_to_pfn(page)) bits |= 2;
        if (folio_nr_pages(page_folio(page)) == 1) bits |= 4;
        return bits;
    }
    return -EINVAL;
}

long probe_highmem(struct probe *probe, struct probe_command *c) {
    u64 *a = c->arguments;
    struct page *page = probe_page_at(probe, a[1]);
    struct page *source;

    if (!page) return -ENOENT;
    switch (a[0]) {
    case PROBE_MEMCPY_FROM_PAGE:
        if (a[3] > sizeof(c->bytes)) return -EINVAL;
        memcpy_from_page((char *)c->bytes, page, a[2], a[3]);
        return 0;
    case PROBE_MEMCPY_TO_PAGE:
        if (a[3] > sizeof(c->bytes)) return -EINVAL;
        memcpy_to_page(page, a[2], (const char *)c->bytes, a[3]);
        return 0;
    case PROBE_CLEAR_HIGHPAGE: clear_highpage(page); return 0;
    case PROBE_KMAP_LOCAL_FOLIO: {
        char *mapped;
        if (a[3] > sizeof(c->bytes) || a[2] + a[3] > PAGE_SIZE) return -EINVAL;
        mapped = kmap_local_folio(page_folio(page), a[2]);
        if (!mapped) return -EFAULT;
        memcpy(c->bytes, mapped, a[3]);
        kunmap_local(mapped); /* any address inside the mapping unmaps it */
        return 0;
    }
    case PROBE_COPY_HIGHPAGE:
        source = probe_page_at(probe, a[3]);
        if (!source) return -ENOENT;
        copy_highpage(page, source);
        return 0;
    }
    return -EINVAL;
}
