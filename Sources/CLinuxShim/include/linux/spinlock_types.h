/*
 * mmulab Linux shim: <linux/spinlock_types.h>. A lock names the host
 * object it stands for; spin_lock_init and friends make that object
 * (<linux/spinlock.h>).
 */
#ifndef MMULAB_LINUX_SPINLOCK_TYPES_H
#define MMULAB_LINUX_SPINLOCK_TYPES_H

struct mmulab_linux_object;

typedef struct spinlock {
    struct mmulab_linux_object *mmulab_object;
} spinlock_t;

#endif /* MMULAB_LINUX_SPINLOCK_TYPES_H */
