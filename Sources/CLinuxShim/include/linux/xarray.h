/*
 * mmulab Linux shim: <linux/xarray.h>: the subset of the XArray drivers use
 * for device page tables.
 *
 * An array of pointers indexed by unsigned long (a radix tree of 64-slot
 * nodes), with Linux's entry encodings: value entries (xa_mk_value),
 * tagged pointers (xa_tag_pointer: tags 0, 1 and 3 in the low two bits;
 * the pointer must be 4-byte aligned, as every page handle and kmalloc
 * result is), and error entries (xa_is_err/xa_err). Storing an internal
 * entry (low bits 10) is refused with -EINVAL and a WARN. Three marks per
 * entry (XA_MARK_0..2), cleared when the entry is erased.
 *
 * Every operation takes the array's own spin lock (xa_lock), as Linux's
 * take xa_lock for writing; xa_load takes it too (the shim has no RCU), so
 * it is allowed anywhere a spin lock is. xa_store allocates with `gfp`
 * (<linux/slab.h>: GFP_KERNEL may sleep, and does so with the lock
 * dropped, as Linux's __xas_nomem does); it returns the old entry, or
 * xa_mk_err(-ENOMEM) if a node could not be had. The __xa_ forms expect
 * xa_lock held. xa_for_each_range(xa, index, entry, first, last) visits
 * the present entries in index order and may erase as it goes.
 *
 * Not provided (link error): xa_alloc and the XA_FLAGS_ALLOC arrays,
 * multi-index entries (xa_store_range), xas_* (the advanced API).
 * DEFINE_XARRAY is not provided (compile error): call xa_init.
 */
#ifndef MMULAB_LINUX_XARRAY_H
#define MMULAB_LINUX_XARRAY_H

#include <linux/bug.h>
#include <linux/gfp.h>
#include <linux/kernel.h>
#include <linux/spinlock.h>
#include <linux/types.h>

struct mmulab_xa_node;

struct xarray {
    spinlock_t xa_lock;
    gfp_t xa_flags;
    /* The shim's: the root node and how many levels of 6 index bits it spans. */
    struct mmulab_xa_node *mmulab_root;
    unsigned int mmulab_levels;
};

typedef unsigned int xa_mark_t;
#define XA_MARK_0 0U
#define XA_MARK_1 1U
#define XA_MARK_2 2U
#define XA_PRESENT 8U
#define XA_MARK_MAX XA_MARK_2

#define XA_FLAGS_LOCK_IRQ 0x1u
#define XA_FLAGS_LOCK_BH 0x2u
#define XA_FLAGS_ALLOC 0x40u

/* Entry encodings. */
static inline void *xa_mk_value(unsigned long v) {
    WARN_ON((long)v < 0);
    return (void *)((v << 1) | 1);
}
static inline unsigned long xa_to_value(const void *entry) { return (unsigned long)entry >> 1; }
static inline bool xa_is_value(const void *entry) { return ((unsigned long)entry & 1) != 0; }
static inline void *xa_tag_pointer(void *p, unsigned long tag) { return (void *)((unsigned long)p | tag); }
static inline void *xa_untag_pointer(void *entry) { return (void *)((unsigned long)entry & ~3UL); }
static inline unsigned int xa_pointer_tag(void *entry) { return (unsigned int)((unsigned long)entry & 3UL); }
static inline void *xa_mk_internal(unsigned long v) { return (void *)((v << 2) | 2); }
static inline unsigned long xa_to_internal(const void *entry) { return (unsigned long)entry >> 2; }
static inline bool xa_is_internal(const void *entry) { return ((unsigned long)entry & 3) == 2; }
static inline void *xa_mk_err(long error) { return xa_mk_internal((unsigned long)error); }
static inline bool xa_is_err(const void *entry) {
    return xa_is_internal(entry) && (unsigned long)entry >= (unsigned long)xa_mk_internal((unsigned long)-MAX_ERRNO);
}
static inline int xa_err(void *entry) { return xa_is_err(entry) ? (int)((long)entry >> 2) : 0; }

void mmulab_linux_xa_init_flags(struct xarray *xa, gfp_t flags, const char *name);
#define xa_init_flags(xa, flags) mmulab_linux_xa_init_flags((xa), (flags), #xa)
#define xa_init(xa) mmulab_linux_xa_init_flags((xa), 0, #xa)
void xa_destroy(struct xarray *xa);
bool xa_empty(const struct xarray *xa);

void *xa_load(struct xarray *xa, unsigned long index);
void *xa_store(struct xarray *xa, unsigned long index, void *entry, gfp_t gfp);
void *xa_erase(struct xarray *xa, unsigned long index);
/* -EBUSY if an entry is there, -ENOMEM, -EINVAL, or 0. */
int xa_insert(struct xarray *xa, unsigned long index, void *entry, gfp_t gfp);
/* Stores `entry` if `old` is there; returns what was there. */
void *xa_cmpxchg(struct xarray *xa, unsigned long index, void *old, void *entry, gfp_t gfp);

/* With xa_lock held. */
void *__xa_store(struct xarray *xa, unsigned long index, void *entry, gfp_t gfp);
void *__xa_erase(struct xarray *xa, unsigned long index);

#define xa_lock(xa) spin_lock(&(xa)->xa_lock)
#define xa_unlock(xa) spin_unlock(&(xa)->xa_lock)
#define xa_lock_irq(xa) spin_lock(&(xa)->xa_lock)
#define xa_unlock_irq(xa) spin_unlock(&(xa)->xa_lock)
#define xa_lock_bh(xa) spin_lock(&(xa)->xa_lock)
#define xa_unlock_bh(xa) spin_unlock(&(xa)->xa_lock)
#define xa_lock_irqsave(xa, flags) spin_lock_irqsave(&(xa)->xa_lock, flags)
#define xa_unlock_irqrestore(xa, flags) spin_unlock_irqrestore(&(xa)->xa_lock, flags)

void xa_set_mark(struct xarray *xa, unsigned long index, xa_mark_t mark);
void xa_clear_mark(struct xarray *xa, unsigned long index, xa_mark_t mark);
bool xa_get_mark(struct xarray *xa, unsigned long index, xa_mark_t mark);

/* The first entry at an index in [*index, max] (that has mark `filter`,
 * or any, for XA_PRESENT); sets *index to it. NULL if none. */
void *xa_find(struct xarray *xa, unsigned long *index, unsigned long max, xa_mark_t filter);
/* The same, after *index. */
void *xa_find_after(struct xarray *xa, unsigned long *index, unsigned long max, xa_mark_t filter);

#define xa_for_each_range(xa, index, entry, start, last)                                                               \
    for (index = (start), entry = xa_find(xa, &index, last, XA_PRESENT); entry;                                        \
         entry = xa_find_after(xa, &index, last, XA_PRESENT))
#define xa_for_each_start(xa, index, entry, start) xa_for_each_range(xa, index, entry, start, ULONG_MAX)
#define xa_for_each(xa, index, entry) xa_for_each_start(xa, index, entry, 0)
#define xa_for_each_marked(xa, index, entry, filter)                                                                   \
    for (index = 0, entry = xa_find(xa, &index, ULONG_MAX, filter); entry;                                             \
         entry = xa_find_after(xa, &index, ULONG_MAX, filter))

#endif /* MMULAB_LINUX_XARRAY_H */
