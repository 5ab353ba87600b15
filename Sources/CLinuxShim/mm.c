/*
 * mmulab Linux shim: mm_struct (<linux/sched/mm.h>, <linux/mm_types.h>).
 *
 * One mm_struct per address space a device instance touches, kept in the
 * device's registry while anyone holds a reference (mm_count). The shim
 * learns that the address space exited from a whole-space subscription of
 * its own whose only work is its release (its starts answer OK at once):
 * the release drops the address space's own user, so mmget_not_zero fails
 * from then on. A device with several subscriptions has stopped using an
 * address only when all of them returned, so this one cannot make the
 * host think the driver let go of anything early.
 */
#include <stdio.h>
#include <stdlib.h>

#include "internal.h"

#include <linux/sched/mm.h>

static mmulab_status release_start(void *data, const mmulab_range *range) {
    (void)data, (void)range;
    return MMULAB_OK;
}

static void release_end(void *data, const mmulab_range *range) { (void)data, (void)range; }

static void release(void *data, uint64_t address_space) {
    (void)address_space;
    struct mmulab_linux_mm *m = data;
    if (!__atomic_exchange_n(&m->exited, true, __ATOMIC_ACQ_REL)) {
        /* The address space's own user goes with it. */
        __atomic_fetch_sub(&m->mm.mm_users.counter, 1, __ATOMIC_ACQ_REL);
    }
}

static const mmulab_subscriber_ops release_ops = {
    .struct_size = sizeof(mmulab_subscriber_ops),
    .capabilities = 0,
    .invalidate_range_start = release_start,
    .invalidate_range_end = release_end,
    .release = release,
};

/* Frees an mm no one references: [blockable] (unsubscribing waits for
 * its callbacks to return). */
static void free_mm(struct mmulab_linux_mm *m) {
    struct mmulab_linux_device *device = m->device;
    if (m->release_subscription) device->host->unsubscribe(device->ctx, m->release_subscription);
    shim_objects_release_range(device, m, sizeof *m, "mm.c", __LINE__);
    free(m);
}

struct mm_struct *mmulab_linux_mm_get(struct mmulab_linux_device *device, uint64_t address_space,
                                      mmulab_error *error) {
    const mmulab_host *host = device->host;
    host->lock(device->lock);
    struct mmulab_linux_mm *found = shim_xa_load(&device->mms, address_space);
    bool exited = found && __atomic_load_n(&found->exited, __ATOMIC_ACQUIRE);
    if (found && !exited) __atomic_fetch_add(&found->mm.mm_count.counter, 1, __ATOMIC_ACQ_REL);
    host->unlock(device->lock);
    if (exited) {
        if (error) {
            error->status = MMULAB_ERR_KILLED;
            snprintf(error->message, sizeof error->message, "address space %llu has exited",
                     (unsigned long long)address_space);
        }
        return NULL;
    }
    if (found) return &found->mm;

    struct mmulab_linux_mm *m = calloc(1, sizeof *m);
    if (!m) {
        mmulab_linux_fail(error, -ENOMEM, "mm_struct");
        return NULL;
    }
    m->mm.mmulab = m;
    m->address_space = address_space;
    m->device = device;
    atomic_set(&m->mm.mm_users, 1); /* the address space itself */
    atomic_set(&m->mm.mm_count, 1); /* the caller's reference */
    INIT_LIST_HEAD(&m->notifiers);
    INIT_LIST_HEAD(&m->intervals);
    mmulab_linux_scope scope = mmulab_linux_enter(device, &m->mm);
    init_rwsem(&m->mm.mmap_lock);
    mmulab_linux_leave(scope);
    mmulab_status status =
        host->subscribe(device->ctx, address_space, &release_ops, m, &m->release_subscription, error);
    if (status != MMULAB_OK) {
        m->release_subscription = NULL;
        free_mm(m);
        return NULL;
    }

    /* Another thread may have made the same address space's mm meanwhile:
     * the first in the registry is the one. */
    host->lock(device->lock);
    found = shim_xa_load(&device->mms, address_space);
    void *stored = found ? NULL : shim_xa_store(&device->mms, address_space, m);
    if (found) __atomic_fetch_add(&found->mm.mm_count.counter, 1, __ATOMIC_ACQ_REL);
    host->unlock(device->lock);
    if (found || xa_is_err(stored)) {
        free_mm(m);
        if (!found) mmulab_linux_fail(error, -ENOMEM, "mm_struct registry");
        return found ? &found->mm : NULL;
    }
    return &m->mm;
}

uint64_t mmulab_linux_mm_address_space(const struct mm_struct *mm) { return shim_mm(mm)->address_space; }

bool mmget_not_zero(struct mm_struct *mm) { return atomic_inc_not_zero(&mm->mm_users); }

void mmget(struct mm_struct *mm) { WARN_ON(atomic_inc_return(&mm->mm_users) <= 1); }

void mmput(struct mm_struct *mm) {
    int left = atomic_dec_return(&mm->mm_users);
    /* In Linux the last mmput tears the address space down; here only
     * the lab's exit does, so the count reaching 0 before that means more
     * puts than gets. */
    if (left < 0 || (left == 0 && !__atomic_load_n(&shim_mm(mm)->exited, __ATOMIC_ACQUIRE))) {
        mmulab_linux_report("BUG", "mmput without a matching mmget (mm_users underflow)", "mm.c", __LINE__, "mmput");
    }
}

void mmgrab(struct mm_struct *mm) { WARN_ON(atomic_inc_return(&mm->mm_count) <= 1); }

void mmdrop(struct mm_struct *mm) {
    struct mmulab_linux_mm *m = shim_mm(mm);
    struct mmulab_linux_device *device = m->device;
    const mmulab_host *host = device->host;
    /* The last reference leaves the registry under its lock, so that
     * mmulab_linux_mm_get never hands out an mm being freed. */
    host->lock(device->lock);
    int left = atomic_dec_return(&mm->mm_count);
    if (left == 0 && shim_xa_load(&device->mms, m->address_space) == m) shim_xa_store(&device->mms, m->address_space, NULL);
    bool defer = left == 0 && host->in_non_blockable(device->ctx);
    if (defer) list_add_tail(&m->zombie_link, &device->zombies);
    host->unlock(device->lock);
    if (left < 0) {
        mmulab_linux_report("BUG", "mmdrop without a matching mmgrab (mm_count underflow)", "mm.c", __LINE__, "mmdrop");
    } else if (left == 0 && !defer) {
        free_mm(m);
    }
}

void shim_mms_free(struct mmulab_linux_device *device) {
    struct mmulab_linux_mm *m, *next;
    list_for_each_entry_safe(m, next, &device->zombies, zombie_link) {
        list_del(&m->zombie_link);
        free_mm(m);
    }
    unsigned long index = 0;
    unsigned long kept = 0;
    for (void *entry = shim_xa_find(&device->mms, &index, ULONG_MAX, false); entry;
         entry = shim_xa_find(&device->mms, &index, ULONG_MAX, true)) {
        kept++;
        shim_xa_store(&device->mms, index, NULL);
        shim_notifiers_unhook(entry);
        shim_intervals_unhook(entry);
        free_mm(entry);
    }
    if (kept > 0) {
        shim_log(device, MMULAB_LOG_WARNING, "%lu mm_struct(s) still referenced (mmgrab without mmdrop) at destroy",
                 kept);
    }
}

/* The mm of `address_space` for `device` if there is one (no reference
 * taken: the caller's scope keeps it, as hmm_range_fault's caller holds it). */
struct mmulab_linux_mm *shim_xa_load_locked_mm(struct mmulab_linux_device *device, uint64_t address_space) {
    device->host->lock(device->lock);
    struct mmulab_linux_mm *found = shim_xa_load(&device->mms, address_space);
    device->host->unlock(device->lock);
    return found;
}
