/*
 * mmulab Linux shim: struct page handles, dirty and accessed reports, and
 * pinning (<linux/mm.h>).
 *
 * A struct page here is a handle on one translation the host gave: the
 * address space, and the mmulab_pfn (address, frame, the frame's
 * generation, permission). The same translation always gives the same
 * handle (a hash on all of it), so drivers may compare page pointers as
 * they do in Linux. Handles live in a ring of up to RING pages a device;
 * when the ring is full, the oldest handle no one holds (no kmap, no pin)
 * is reused. A driver that keeps a page pointer through RING newer
 * translations and then uses it reaches the newer translation instead:
 * that can only hide a stale use, never invent one, and a driver that
 * keeps stale pages is found long before that.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

#include <linux/highmem.h>
#include <linux/sched.h>

#define RING (1u << 16)
#define CHUNK 1024u
/* Beyond RING only if every handle is held; a hard bound past that. */
#define MAX_CHUNKS (4u * RING / CHUNK)

struct page {
    uint64_t address_space;
    mmulab_pfn pfn;
    struct mmulab_linux_device *device;
    struct page *hash_next;
    uint32_t holds; /* kmap mappings outstanding */
    uint32_t pins;  /* pins this handle took (pin_user_pages), each a host pin */
    uint32_t refs;  /* get_page references outstanding */
    /* What backs `refs` when no pin of this handle does, set only while
     * refs > 0: the host pin kept from the last unpin_user_page while
     * references remained (the host pins this handle holds are pins +
     * ref_pin), or a host reference (page_get, ABI 1.6) taken by the first
     * get_page of a page nothing held. At most one of the two. */
    bool ref_pin;
    bool ref_host;
    uint32_t refused; /* get_page calls refused (reported): their put_page is not reported again */
    /* References that hold nothing: make_device_exclusive's (the host
     * hands out none; the exclusive entry keeps the page mapped). Put first. */
    uint32_t transient;
    bool locked; /* the folio lock make_device_exclusive returns it with */
    mmulab_pfn ref_pfn; /* that pin's translation (MMULAB_PFN_PINNED) */
    bool live;
};

struct mmulab_linux_pages {
    struct page *chunks[MAX_CHUNKS];
    uint32_t chunk_count;
    uint32_t used;   /* slots ever handed out */
    uint32_t cursor; /* the next slot to consider for reuse */
    struct page *buckets[RING];
};

/* What makes two translations the same. */
static const uint32_t identity_flags =
    MMULAB_PFN_WRITABLE | MMULAB_PFN_PINNED | MMULAB_PFN_DEVICE_PRIVATE | MMULAB_PFN_EXCLUSIVE;

static uint32_t hash_of(uint64_t space, const mmulab_pfn *pfn) {
    uint64_t h = space * 0x9E3779B97F4A7C15ull;
    h ^= pfn->address * 0xC2B2AE3D27D4EB4Full;
    h ^= pfn->pfn * 0x165667B19E3779F9ull;
    h ^= ((uint64_t)pfn->generation << 8 | (pfn->flags & identity_flags)) * 0x27D4EB2F165667C5ull;
    return (uint32_t)(h >> 32) & (RING - 1);
}

static bool same(const struct page *page, uint64_t space, const mmulab_pfn *pfn) {
    return page->address_space == space && page->pfn.address == pfn->address && page->pfn.pfn == pfn->pfn &&
           page->pfn.generation == pfn->generation &&
           (page->pfn.flags & identity_flags) == (pfn->flags & identity_flags);
}

static struct page *slot(struct mmulab_linux_pages *pages, uint32_t index) {
    return &pages->chunks[index / CHUNK][index % CHUNK];
}

static void unhash(struct mmulab_linux_pages *pages, struct page *page) {
    struct page **link = &pages->buckets[hash_of(page->address_space, &page->pfn)];
    while (*link && *link != page) link = &(*link)->hash_next;
    if (*link) *link = page->hash_next;
    page->hash_next = NULL;
}

/* A free slot (page lock held), or NULL when there is none to be had. */
static struct page *free_slot(struct mmulab_linux_pages *pages) {
    uint32_t capacity = pages->chunk_count * CHUNK;
    if (pages->used < capacity) return slot(pages, pages->used++);
    if (capacity < RING) goto grow;
    for (uint32_t tried = 0; tried < capacity; tried++) {
        struct page *page = slot(pages, pages->cursor);
        pages->cursor = (pages->cursor + 1) % capacity;
        if (page->holds == 0 && page->pins == 0 && page->refs == 0 && page->transient == 0 && !page->locked) {
            unhash(pages, page);
            return page;
        }
    }
grow:
    if (pages->chunk_count == MAX_CHUNKS) return NULL;
    pages->chunks[pages->chunk_count] = calloc(CHUNK, sizeof(struct page));
    if (!pages->chunks[pages->chunk_count]) return NULL;
    pages->chunk_count++;
    return slot(pages, pages->used++);
}

struct page *shim_page_intern(struct mmulab_linux_device *device, uint64_t address_space, const mmulab_pfn *pfn,
                              bool pin) {
    const mmulab_host *host = device->host;
    host->lock(device->page_lock);
    struct mmulab_linux_pages *pages = device->pages;
    if (!pages) pages = device->pages = calloc(1, sizeof *pages);
    struct page *page = NULL;
    if (pages) {
        uint32_t bucket = hash_of(address_space, pfn);
        for (page = pages->buckets[bucket]; page && !same(page, address_space, pfn); page = page->hash_next) {}
        if (!page && (page = free_slot(pages))) {
            *page = (struct page){ .address_space = address_space, .pfn = *pfn, .device = device, .live = true,
                                   .hash_next = pages->buckets[bucket] };
            pages->buckets[bucket] = page;
        }
        if (page && pin) page->pins++;
    }
    host->unlock(device->page_lock);
    /* hmm_pfns carry the handle in the bits below the flags. */
    BUG_ON(page && ((uintptr_t)page & HMM_PFN_FLAGS));
    return page;
}

bool shim_page_read(struct page *page, uint64_t *address_space, mmulab_pfn *pfn, bool hold) {
    if (!page) return false;
    struct mmulab_linux_device *device = page->device;
    if (!device) return false;
    device->host->lock(device->page_lock);
    bool live = page->live;
    if (live) {
        *address_space = page->address_space;
        /* A page the driver holds a reference on is reached through the
         * pin or host reference behind it: good for as long as the
         * reference is held, even once the primary has unmapped it (Linux:
         * the page stays). */
        *pfn = page->ref_pin || page->ref_host ? page->ref_pfn : page->pfn;
        if (hold) page->holds++;
    }
    device->host->unlock(device->page_lock);
    return live;
}

void shim_page_release_hold(struct page *page) {
    struct mmulab_linux_device *device = page->device;
    device->host->lock(device->page_lock);
    if (page->holds > 0) page->holds--;
    device->host->unlock(device->page_lock);
}

struct mmulab_linux_device *shim_page_device(const struct page *page) { return page->device; }

void shim_pages_free(struct mmulab_linux_device *device) {
    struct mmulab_linux_pages *pages = device->pages;
    if (!pages) return;
    uint64_t pinned = 0, referenced = 0;
    for (uint32_t i = 0; i < pages->used; i++) {
        pinned += slot(pages, i)->pins;
        referenced += slot(pages, i)->refs;
    }
    if (pinned > 0) {
        /* The pins stay taken: the lab's own pin-leak check reports them. */
        shim_log(device, MMULAB_LOG_WARNING, "%llu page pin(s) never unpinned", (unsigned long long)pinned);
    }
    if (referenced > 0) {
        /* The host pins behind them stay taken too: the same check reports them. */
        shim_report(device, "BUG", "get_page reference(s) never put (put_page) when the device went away", "page.c",
                    __LINE__, "get_page");
    }
    for (uint32_t i = 0; i < pages->chunk_count; i++) free(pages->chunks[i]);
    free(pages);
    device->pages = NULL;
}

/* A page handle's translation, or false (reported) if it is not one. */
static bool translation(struct page *page, uint64_t *space, mmulab_pfn *pfn, const char *what) {
    if (shim_page_read(page, space, pfn, false)) return true;
    shim_report(shim_device(), "BUG", "a struct page pointer that no hmm_range_fault or pin_user_pages returned",
                "page.c", __LINE__, what);
    return false;
}

unsigned long page_to_pfn(const struct page *page) {
    uint64_t space;
    mmulab_pfn pfn;
    return translation((struct page *)page, &space, &pfn, "page_to_pfn") ? (unsigned long)pfn.pfn : 0;
}

bool is_device_private_page(const struct page *page) {
    uint64_t space;
    mmulab_pfn pfn;
    return translation((struct page *)page, &space, &pfn, "is_device_private_page") &&
           (pfn.flags & MMULAB_PFN_DEVICE_PRIVATE);
}

bool is_zone_device_page(const struct page *page) { return is_device_private_page(page); }

bool set_page_dirty(struct page *page) {
    uint64_t space;
    mmulab_pfn pfn;
    if (!translation(page, &space, &pfn, "set_page_dirty")) return false;
    page->device->host->set_dirty(page->device->ctx, &pfn);
    return true;
}

/* Linux takes the page lock around set_page_dirty: it may sleep. */
int set_page_dirty_lock(struct page *page) {
    shim_might_sleep(shim_device(), "set_page_dirty_lock()", "page.c", __LINE__);
    return set_page_dirty(page);
}

void mark_page_accessed(struct page *page) {
    uint64_t space;
    mmulab_pfn pfn;
    if (!translation(page, &space, &pfn, "mark_page_accessed")) return;
    page->device->host->mark_accessed(page->device->ctx, &pfn);
}

/* ---------------------------------------------------------------------- */
/* Pinning                                                                 */
/* ---------------------------------------------------------------------- */

/* Pins [start, start + count pages) through the host into `pfns`: 0 or the host's status. */
static mmulab_status host_pin(struct mmulab_linux_device *device, uint64_t space, unsigned long start,
                              unsigned long count, unsigned int gup_flags, mmulab_pfn *pfns) {
    mmulab_error error = { 0 };
    return device->host->pin(device->ctx, space, start, count * PAGE_SIZE,
                             (gup_flags & FOLL_WRITE) ? MMULAB_FAULT_WRITE : 0, pfns, &error);
}

/*
 * Linux's gup: the page containing `start` and the nr_pages - 1 after it
 * (an unaligned start is rounded down, not refused), as many as can be
 * pinned from the first on. Returns how many were pinned, which may be
 * fewer than asked when a page part way cannot be (not mapped, or not
 * writable with FOLL_WRITE): the caller owns those pins and must unpin
 * them. Only when the first page cannot be pinned is the answer an error.
 * The host pins a range all or nothing, so a failed range is pinned again
 * a page at a time to find where it stops.
 */
static long pin_pages(struct mm_struct *mm, unsigned long start, unsigned long nr_pages, unsigned int gup_flags,
                      struct page **pages) {
    struct mmulab_linux_device *device = shim_require_device("pin_user_pages");
    if (!mm) return -EFAULT;
    if (nr_pages == 0) return 0;
    if (nr_pages > (1ul << 20)) return -EINVAL;
    start &= PAGE_MASK;
    mmulab_pfn *pfns = calloc(nr_pages, sizeof *pfns);
    if (!pfns) return -ENOMEM;
    uint64_t space = shim_mm(mm)->address_space;
    unsigned long pinned = nr_pages;
    mmulab_status status = host_pin(device, space, start, nr_pages, gup_flags, pfns);
    if (status != MMULAB_OK) {
        for (pinned = 0; pinned < nr_pages; pinned++) {
            status = host_pin(device, space, start + pinned * PAGE_SIZE, 1, gup_flags, &pfns[pinned]);
            if (status != MMULAB_OK) break;
        }
        if (pinned == 0) {
            free(pfns);
            return shim_errno_from_status(status);
        }
    }
    for (unsigned long i = 0; i < pinned; i++) {
        pages[i] = shim_page_intern(device, space, &pfns[i], true);
        if (!pages[i]) {
            /* No handle to give: give back what this call pinned. */
            for (unsigned long j = 0; j < i; j++) unpin_user_page(pages[j]);
            device->host->unpin(device->ctx, &pfns[i], pinned - i, false);
            free(pfns);
            return -ENOMEM;
        }
    }
    free(pfns);
    return (long)pinned;
}

long pin_user_pages(unsigned long start, unsigned long nr_pages, unsigned int gup_flags, struct page **pages) {
    struct mm_struct *mm = current->mm;
    if (mm) mmap_assert_locked(mm);
    return pin_pages(mm, start, nr_pages, gup_flags, pages);
}

/* Takes mmap_lock itself when it must fault (Linux's slow path): may sleep.
 * nr_pages 0 or negative pins nothing and returns 0, as Linux documents. */
int pin_user_pages_fast(unsigned long start, int nr_pages, unsigned int gup_flags, struct page **pages) {
    shim_might_sleep(shim_device(), "pin_user_pages_fast()", "page.c", __LINE__);
    if (nr_pages <= 0) return 0;
    return (int)pin_pages(current->mm, start, (unsigned long)nr_pages, gup_flags, pages);
}

/* With `locked` NULL or *locked set, the caller holds mmap_lock (asserted);
 * with *locked 0, Linux takes and drops it itself (and leaves *locked 0),
 * which is what the shim's gup, holding it only inside the host, does. */
long pin_user_pages_remote(struct mm_struct *mm, unsigned long start, unsigned long nr_pages, unsigned int gup_flags,
                           struct page **pages, int *locked) {
    if (mm && (!locked || *locked)) mmap_assert_locked(mm);
    return pin_pages(mm, start, nr_pages, gup_flags, pages);
}

static void unpin(struct page *page, bool dirty) {
    uint64_t space;
    mmulab_pfn pfn;
    if (!translation(page, &space, &pfn, "unpin_user_page")) return;
    struct mmulab_linux_device *device = page->device;
    device->host->lock(device->page_lock);
    bool pinned = page->pins > 0;
    if (pinned) page->pins--;
    /* The last pin of a page the driver still holds references on stays
     * taken, for the references (get_page borrowed it). */
    bool kept = pinned && page->pins == 0 && page->refs > 0 && !page->ref_pin && !page->ref_host;
    if (kept) {
        page->ref_pin = true;
        page->ref_pfn = page->pfn;
    }
    device->host->unlock(device->page_lock);
    if (!pinned) {
        shim_report(shim_device(), "BUG", "unpin of a page this handle never pinned (or unpinned twice)", "page.c",
                    __LINE__, "unpin_user_page");
        return;
    }
    if (!kept) {
        device->host->unpin(device->ctx, &pfn, 1, dirty);
    } else if (dirty) {
        device->host->set_dirty(device->ctx, &pfn);
    }
}

void unpin_user_page(struct page *page) { unpin(page, false); }

void unpin_user_pages(struct page **pages, unsigned long npages) {
    for (unsigned long i = 0; i < npages; i++) unpin(pages[i], false);
}

void unpin_user_pages_dirty_lock(struct page **pages, unsigned long npages, bool make_dirty) {
    for (unsigned long i = 0; i < npages; i++) unpin(pages[i], make_dirty);
}

/* ---------------------------------------------------------------------- */
/* References (get_page / put_page)                                        */
/* ---------------------------------------------------------------------- */

/*
 * A reference on a page the driver holds pinned (or referenced) is
 * counted here and kept by what already holds the frame: the pin, which
 * the last unpin_user_page then leaves taken until the last put_page. A
 * reference on a page nothing holds (one from hmm_range_fault) is a host
 * reference on the frame (page_get, ABI 1.6: it never sleeps and takes no
 * lock of the primary's, as Linux's get_page). On an older host, or for a
 * device-private page (the host keeps device memory itself), it cannot be
 * expressed: refused and reported.
 */
static bool host_references(const mmulab_host *host) {
    return host->abi_minor >= 6 && host->struct_size >= offsetof(mmulab_host, page_put) + sizeof host->page_put &&
           host->page_get && host->page_put;
}

void get_page(struct page *page) {
    uint64_t space;
    mmulab_pfn pfn;
    if (!translation(page, &space, &pfn, "get_page")) return;
    struct mmulab_linux_device *device = page->device;
    device->host->lock(device->page_lock);
    bool held = page->pins > 0 || page->refs > 0;
    bool overflow = held && page->refs == UINT32_MAX;
    if (held && !overflow) page->refs++;
    device->host->unlock(device->page_lock);
    if (overflow) {
        shim_report(shim_device(), "BUG", "get_page: the page's reference count would overflow", "page.c", __LINE__,
                    "get_page");
        return;
    }
    if (held) return;
    /* Nothing holds it: a host reference, if the host has them. */
    bool taken = !(pfn.flags & MMULAB_PFN_DEVICE_PRIVATE) && host_references(device->host) &&
                 device->host->page_get(device->ctx, &pfn) == MMULAB_OK;
    device->host->lock(device->page_lock);
    bool spare = false;
    if (taken) {
        page->refs++;
        /* Another get_page may have backed the references meanwhile. */
        spare = page->ref_pin || page->ref_host || page->pins > 0;
        if (!spare) {
            page->ref_host = true;
            page->ref_pfn = pfn;
            page->ref_pfn.flags |= MMULAB_PFN_REFERENCED;
        }
    } else {
        page->refused++;
    }
    device->host->unlock(device->page_lock);
    if (spare) device->host->page_put(device->ctx, &pfn);
    if (taken) return;
    if (pfn.flags & MMULAB_PFN_DEVICE_PRIVATE) {
        shim_report(shim_device(), "BUG",
                    "get_page of a device-private page no pin or reference holds is not provided: the host keeps "
                    "device memory itself",
                    "page.c", __LINE__, "get_page");
    } else if (!host_references(device->host)) {
        shim_report(shim_device(), "BUG",
                    "get_page of a page no pin or reference holds (one from hmm_range_fault) needs the host's "
                    "page_get (ABI 1.6); pin it with pin_user_pages and take references on that",
                    "page.c", __LINE__, "get_page");
    }
    /* Else page_get refused it and the host reported why (freed since: a use after free). */
}

void put_page(struct page *page) {
    uint64_t space;
    mmulab_pfn pfn;
    if (!translation(page, &space, &pfn, "put_page")) return;
    struct mmulab_linux_device *device = page->device;
    device->host->lock(device->page_lock);
    bool underflow = page->refs == 0 && page->refused == 0 && page->transient == 0;
    bool release_pin = false, release_reference = false;
    mmulab_pfn held = page->ref_pfn;
    if (page->transient > 0) {
        page->transient--;
    } else if (page->refs > 0) {
        page->refs--;
        /* The last reference gives back what it kept. */
        if (page->refs == 0) {
            release_pin = page->ref_pin;
            release_reference = page->ref_host;
            page->ref_pin = page->ref_host = false;
        }
    } else if (page->refused > 0) {
        page->refused--; /* its get_page was refused, and reported then */
    }
    device->host->unlock(device->page_lock);
    if (underflow) {
        shim_report(shim_device(), "BUG", "put_page of a page without a reference (Linux would free a page in use)",
                    "page.c", __LINE__, "put_page");
    }
    if (release_pin) device->host->unpin(device->ctx, &held, 1, false);
    if (release_reference) device->host->page_put(device->ctx, &held);
}

void folio_get(struct folio *folio) { get_page((struct page *)folio); }
void folio_put(struct folio *folio) { put_page((struct page *)folio); }

/* make_device_exclusive's page: locked, with a reference that holds
 * nothing (the host takes none). False if it is locked already (reported
 * by the caller: Linux would wait for ever). */
bool shim_page_lock_transient(struct page *page) {
    struct mmulab_linux_device *device = page->device;
    device->host->lock(device->page_lock);
    bool was_locked = page->locked;
    if (!was_locked) {
        page->locked = true;
        page->transient++;
    }
    device->host->unlock(device->page_lock);
    return !was_locked;
}

void folio_unlock(struct folio *folio) {
    struct page *page = (struct page *)folio;
    uint64_t space;
    mmulab_pfn pfn;
    if (!translation(page, &space, &pfn, "folio_unlock")) return;
    struct mmulab_linux_device *device = page->device;
    device->host->lock(device->page_lock);
    bool was_locked = page->locked;
    page->locked = false;
    device->host->unlock(device->page_lock);
    if (!was_locked) {
        shim_report(shim_device(), "BUG", "folio_unlock of a folio that is not locked (VM_BUG_ON_FOLIO)", "page.c",
                    __LINE__, "folio_unlock");
    }
}

void unlock_page(struct page *page) { folio_unlock((struct folio *)page); }
