/*
 * mmulab Linux shim: <linux/kref.h>: a reference count that calls
 * `release` when it drops to zero. A put past zero is reported.
 */
#ifndef MMULAB_LINUX_KREF_H
#define MMULAB_LINUX_KREF_H

#include <linux/atomic.h>
#include <linux/bug.h>

struct kref {
    atomic_t refcount;
};

#define KREF_INIT(n) { ATOMIC_INIT(n) }

static inline void kref_init(struct kref *kref) { atomic_set(&kref->refcount, 1); }
static inline unsigned int kref_read(const struct kref *kref) { return (unsigned int)atomic_read(&kref->refcount); }
static inline void kref_get(struct kref *kref) { WARN_ON(atomic_inc_return(&kref->refcount) <= 1); }
static inline bool kref_get_unless_zero(struct kref *kref) { return atomic_inc_not_zero(&kref->refcount); }

/* Drops a reference; calls `release` and returns 1 if it was the last. */
static inline int kref_put(struct kref *kref, void (*release)(struct kref *kref)) {
    int left = atomic_dec_return(&kref->refcount);
    if (WARN_ON(left < 0)) return 0;
    if (left == 0) {
        release(kref);
        return 1;
    }
    return 0;
}

#endif /* MMULAB_LINUX_KREF_H */
