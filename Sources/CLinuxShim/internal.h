/*
 * mmulab Linux shim: what the runtime's files share (not seen by drivers).
 *
 * The runtime stands between kernel-style code and the plugin ABI's host
 * services. Every thread working for a device instance is in a scope
 * (mmulab_linux_enter): the scope names the device, whose host table every
 * service call goes through, and current->mm. Objects the driver makes
 * (locks, completions, wait queues) are host objects recorded in the
 * device's registry by the address of the kernel structure that names
 * them, so freeing that memory (kfree) or the device frees them too.
 */
#ifndef MMULAB_LINUX_INTERNAL_H
#define MMULAB_LINUX_INTERNAL_H

#include "mmulab_device_plugin.h"
#include "mmulab/linux_glue.h"

#include <linux/hmm.h>
#include <linux/kernel.h>
#include <linux/list.h>
#include <linux/mm.h>
#include <linux/mmu_notifier.h>
#include <linux/xarray.h>

/* An xarray whose nodes come from calloc, unlocked: a registry of the
 * shim's own, guarded by the device's lock. */
#define MMULAB_XA_INTERNAL 0x80000000u

struct mmulab_linux_pages; /* page.c */
struct dev_pagemap;        /* <linux/memremap.h> */

struct mmulab_linux_device {
    const mmulab_host *host;
    void *ctx;
    char name[64];
    /* A host spin lock guarding `objects`, `mms` and `zombies`. */
    mmulab_lock *lock;
    /* Host objects by the address of the kernel structure naming them (>> 3). */
    struct xarray objects;
    /* The mm of each address space (struct mmulab_linux_mm), by its id. */
    struct xarray mms;
    /* mms whose last reference went where freeing them could not sleep. */
    struct list_head zombies;
    /* A host spin lock guarding the page handles. */
    mmulab_lock *page_lock;
    struct mmulab_linux_pages *pages;
    /* memremap_pages's device-private memory and its pagemap (migrate.c),
     * written under `lock`; `memory` is set once and never cleared. */
    mmulab_device_memory *memory;
    uint64_t memory_owner;
    struct dev_pagemap *pgmap;
    /* kmalloc'd and not yet freed: count and bytes. */
    long allocations;
    long allocated_bytes;
};

/* The shim's side of an mm_struct. */
struct mmulab_linux_mm {
    struct mm_struct mm;
    uint64_t address_space;
    struct mmulab_linux_device *device;
    /* Tells the shim when the address space exits (its release). */
    mmulab_subscription *release_subscription;
    bool exited;
    /* Whole-space notifiers (struct mmu_notifier) and intervals (struct
     * mmulab_interval_handle) registered on it, under the device lock:
     * mmu_notifier_get looks for its ops here, destroy for leftovers. */
    struct list_head notifiers;
    struct list_head intervals;
    struct list_head zombie_link;
    /* vma_lookup's (the whole address space). */
    struct vm_area_struct vma;
};

static inline struct mmulab_linux_mm *shim_mm(const struct mm_struct *mm) { return mm->mmulab; }

/* The shim's side of a registration: the host's handle and who it is for. */
struct mmulab_subscription_handle {
    mmulab_subscription *host;
    struct mmulab_linux_device *device;
    struct mmu_notifier *subscription;
};

struct mmulab_interval_handle {
    mmulab_interval *host;
    struct mmulab_linux_device *device;
    struct mmu_interval_notifier *subscription;
    struct list_head link; /* in the mm's intervals */
};

/* Unhooks what a driver left registered on `m` at destroy (reported). */
void shim_notifiers_unhook(struct mmulab_linux_mm *m);
void shim_intervals_unhook(struct mmulab_linux_mm *m);

/* A host object standing for a kernel lock, completion or wait queue. */
enum shim_object_kind { SHIM_SPIN, SHIM_MUTEX, SHIM_RWSEM, SHIM_COMPLETION, SHIM_WAITQ };

struct mmulab_linux_object {
    enum shim_object_kind kind;
    struct mmulab_linux_device *device;
    const void *address; /* the kernel structure that names it */
    char name[64];
    mmulab_lock *lock;   /* spin / mutex; the rwsem's gate (sleeping) */
    mmulab_lock *guard;  /* rwsem, wait queue: a spin lock over the counts below */
    mmulab_completion *completion;
    uint64_t owner;      /* the holder's host thread id (spin, mutex, rwsem writer); atomic */
    int readers;         /* rwsem: readers inside; atomic reads, writes under guard */
    bool writer_waiting; /* rwsem, under guard */
    unsigned long waiters, generation; /* wait queue, under guard */
};

/* The device the calling thread works for, or NULL outside any scope. */
struct mmulab_linux_device *shim_device(void);
/* The same, for a service that cannot work without one: outside a scope
 * it is a bug in the glue file, reported on stderr, and the process stops. */
struct mmulab_linux_device *shim_require_device(const char *service);

/* The calling thread's host thread id (never 0). */
uint64_t shim_thread_id(struct mmulab_linux_device *device);

/* Reports through `device` (not the current one). */
void shim_report(struct mmulab_linux_device *device, const char *kind, const char *what, const char *file, int line,
                 const char *function);
void shim_log(struct mmulab_linux_device *device, int level, const char *format, ...) __printf(3, 4);

/* might_sleep at a place of the shim's choosing. */
void shim_might_sleep(struct mmulab_linux_device *device, const char *what, const char *file, int line);

/* The registry. */
struct mmulab_linux_object *shim_object_make(const void *address, enum shim_object_kind kind, const char *name);
void shim_object_destroy(struct mmulab_linux_object *object);
/* Forgets and destroys the objects named by memory in [address, address + size). */
void shim_objects_release_range(struct mmulab_linux_device *device, const void *address, size_t size,
                                const char *file, int line);
/* Re-keys the objects in [from, from + size) to the same offsets from `to`. */
void shim_objects_move_range(struct mmulab_linux_device *device, const void *from, const void *to, size_t size);
/* Removes `object` from the registry (it is being destroyed by its owner). */
void shim_object_forget(struct mmulab_linux_object *object);

/* Internal xarrays (MMULAB_XA_INTERNAL), under the device lock. */
void shim_xa_init_internal(struct xarray *xa);
void *shim_xa_load(struct xarray *xa, unsigned long index);
/* Returns the old entry, or xa_mk_err(-ENOMEM). */
void *shim_xa_store(struct xarray *xa, unsigned long index, void *entry);
void *shim_xa_find(struct xarray *xa, unsigned long *index, unsigned long max, bool after);

/* Errors. */
int shim_errno_from_status(mmulab_status status);

/* Lab events as Linux's. */
void shim_range_from_lab(struct mmu_notifier_range *out, struct mm_struct *mm, const mmulab_range *range);

/* Page handles (page.c). */
struct page *shim_page_intern(struct mmulab_linux_device *device, uint64_t address_space, const mmulab_pfn *pfn,
                              bool pin);
/* Snapshot of a handle's translation (under the page lock), taking a kmap
 * hold if `hold`; false if `page` is not a live handle. */
bool shim_page_read(struct page *page, uint64_t *address_space, mmulab_pfn *pfn, bool hold);
void shim_page_release_hold(struct page *page);
struct mmulab_linux_device *shim_page_device(const struct page *page);
/* Locks a page for make_device_exclusive and counts a reference that holds
 * nothing; false (nothing done) if it is locked already. */
bool shim_page_lock_transient(struct page *page);
void shim_pages_free(struct mmulab_linux_device *device);

/* Device-private memory (migrate.c): whether hmm_range_fault's
 * dev_private_owner claims this device's pages (true when memremap_pages
 * made none: memory the glue made itself is always the device's), and
 * bringing one page home. */
bool shim_claims_device_page(struct mmulab_linux_device *device, const void *owner);
int shim_bring_home(struct mmulab_linux_device *device, uint64_t space, uint64_t address);

/* mm (mm.c). */
struct mmulab_linux_mm *shim_xa_load_locked_mm(struct mmulab_linux_device *device, uint64_t address_space);
void shim_mms_free(struct mmulab_linux_device *device);

#endif /* MMULAB_LINUX_INTERNAL_H */
