/*
 * mmulab Linux shim: struct mmu_notifier on the host's whole-space
 * subscriptions (<linux/mmu_notifier.h>).
 *
 * Each registration gives the host a table of trampolines that open a
 * scope (the device, current->mm = the subscription's mm), turn the lab's
 * range into Linux's, and call the driver's op.
 */
#include <stdlib.h>

#include "internal.h"

#include <linux/sched.h>
#include <linux/sched/mm.h>

static struct mmulab_subscription_handle *handle_of(void *data) { return data; }

static mmulab_status range_start(void *data, const mmulab_range *lab) {
    struct mmulab_subscription_handle *h = handle_of(data);
    struct mmu_notifier *subscription = h->subscription;
    if (!subscription->ops->invalidate_range_start) return MMULAB_OK;
    struct mmu_notifier_range range;
    shim_range_from_lab(&range, subscription->mm, lab);
    mmulab_linux_scope scope = mmulab_linux_enter(h->device, subscription->mm);
    int result = subscription->ops->invalidate_range_start(subscription, &range);
    if (result != 0 && result != -EAGAIN) {
        /* Linux's mn_hlist_invalidate_range_start warns and takes it as a refusal. */
        shim_log(h->device, MMULAB_LOG_MISBEHAVING,
                 "WARN: invalidate_range_start returned %d (only 0, or -EAGAIN to a non-blockable range)", result);
    }
    mmulab_linux_leave(scope);
    /* -EAGAIN to a blockable range is the host's own finding. */
    return result == 0 ? MMULAB_OK : MMULAB_RETRY;
}

static void range_end(void *data, const mmulab_range *lab) {
    struct mmulab_subscription_handle *h = handle_of(data);
    struct mmu_notifier *subscription = h->subscription;
    if (!subscription->ops->invalidate_range_end) return;
    struct mmu_notifier_range range;
    shim_range_from_lab(&range, subscription->mm, lab);
    mmulab_linux_scope scope = mmulab_linux_enter(h->device, subscription->mm);
    subscription->ops->invalidate_range_end(subscription, &range);
    mmulab_linux_leave(scope);
}

static void secondary_tlbs(void *data, const mmulab_range *lab) {
    struct mmulab_subscription_handle *h = handle_of(data);
    struct mmu_notifier *subscription = h->subscription;
    mmulab_linux_scope scope = mmulab_linux_enter(h->device, subscription->mm);
    subscription->ops->arch_invalidate_secondary_tlbs(subscription, subscription->mm, (unsigned long)lab->start,
                                                      (unsigned long)lab->end);
    mmulab_linux_leave(scope);
}

/* The host's clear_young is Linux's clear_flush_young (reclaim's aging). */
static int clear_young(void *data, uint64_t address_space, uint64_t start, uint64_t end) {
    (void)address_space;
    struct mmulab_subscription_handle *h = handle_of(data);
    struct mmu_notifier *subscription = h->subscription;
    const struct mmu_notifier_ops *ops = subscription->ops;
    mmulab_linux_scope scope = mmulab_linux_enter(h->device, subscription->mm);
    int young = ops->clear_flush_young
                    ? ops->clear_flush_young(subscription, subscription->mm, (unsigned long)start, (unsigned long)end)
                    : ops->clear_young(subscription, subscription->mm, (unsigned long)start, (unsigned long)end);
    mmulab_linux_leave(scope);
    return young;
}

static int test_young(void *data, uint64_t address_space, uint64_t address) {
    (void)address_space;
    struct mmulab_subscription_handle *h = handle_of(data);
    struct mmu_notifier *subscription = h->subscription;
    mmulab_linux_scope scope = mmulab_linux_enter(h->device, subscription->mm);
    int young = subscription->ops->test_young(subscription, subscription->mm, (unsigned long)address);
    mmulab_linux_leave(scope);
    return young;
}

/* Calls the driver's release once: from the exit, or from unregister if
 * the exit has not come. */
static void release_once(struct mmulab_linux_device *device, struct mmu_notifier *subscription) {
    if (__atomic_exchange_n(&subscription->mmulab_released, true, __ATOMIC_ACQ_REL)) return;
    if (!subscription->ops->release) return;
    mmulab_linux_scope scope = mmulab_linux_enter(device, subscription->mm);
    subscription->ops->release(subscription, subscription->mm);
    mmulab_linux_leave(scope);
}

static void release(void *data, uint64_t address_space) {
    (void)address_space;
    struct mmulab_subscription_handle *h = handle_of(data);
    release_once(h->device, h->subscription);
}

int __mmu_notifier_register(struct mmu_notifier *subscription, struct mm_struct *mm) {
    struct mmulab_linux_device *device = shim_mm(mm)->device;
    mmap_assert_write_locked(mm);
    if (WARN_ON(!subscription->ops)) return -EINVAL;
    /* Linux BUG_ONs a dead mm here; the lab's exit can race a registration
     * (a process's own cannot), and the host refuses it: -EFAULT. */
    struct mmulab_subscription_handle *h = calloc(1, sizeof *h);
    if (!h) return -ENOMEM;
    const struct mmu_notifier_ops *ops = subscription->ops;
    h->device = device;
    h->subscription = subscription;
    subscription->mm = mm;
    subscription->users = 1;
    subscription->mmulab_released = false;
    subscription->mmulab_subscription = h;
    /* The host copies the table. */
    mmulab_subscriber_ops table = {
        .struct_size = sizeof table,
        .capabilities = MMULAB_CAP_FAILS_NONBLOCKING |
                        ((ops->clear_flush_young || ops->clear_young || ops->test_young) ? MMULAB_CAP_YOUNG : 0) |
                        (ops->arch_invalidate_secondary_tlbs ? MMULAB_CAP_SECONDARY_TLB : 0),
        .invalidate_range_start = range_start,
        .invalidate_range_end = range_end,
        .invalidate_secondary_tlbs = ops->arch_invalidate_secondary_tlbs ? secondary_tlbs : NULL,
        .clear_young = (ops->clear_flush_young || ops->clear_young) ? clear_young : NULL,
        .test_young = ops->test_young ? test_young : NULL,
        .release = release,
    };
    mmgrab(mm);
    /* Registered in the mm's list first: a callback may come before subscribe returns. */
    device->host->lock(device->lock);
    list_add_tail(&subscription->mmulab_link, &shim_mm(mm)->notifiers);
    device->host->unlock(device->lock);
    mmulab_error error = { 0 };
    mmulab_status status =
        device->host->subscribe(device->ctx, shim_mm(mm)->address_space, &table, h, &h->host, &error);
    if (status != MMULAB_OK) {
        device->host->lock(device->lock);
        list_del(&subscription->mmulab_link);
        device->host->unlock(device->lock);
        subscription->mmulab_subscription = NULL;
        free(h);
        mmdrop(mm);
        return shim_errno_from_status(status);
    }
    return 0;
}

int mmu_notifier_register(struct mmu_notifier *subscription, struct mm_struct *mm) {
    mmap_write_lock(mm);
    int result = __mmu_notifier_register(subscription, mm);
    mmap_write_unlock(mm);
    return result;
}

/* Unhooks from the host (no callback runs after) and from the mm's list. */
static void unhook(struct mmu_notifier *subscription) {
    struct mmulab_subscription_handle *h = subscription->mmulab_subscription;
    struct mmulab_linux_device *device = h->device;
    device->host->unsubscribe(device->ctx, h->host);
    device->host->lock(device->lock);
    list_del(&subscription->mmulab_link);
    device->host->unlock(device->lock);
    subscription->mmulab_subscription = NULL;
    free(h);
}

void mmu_notifier_unregister(struct mmu_notifier *subscription, struct mm_struct *mm) {
    might_sleep();
    struct mmulab_subscription_handle *h = subscription->mmulab_subscription;
    if (WARN_ON(!h || subscription->mm != mm)) return;
    /* Linux calls release here if the exit has not: the driver's teardown
     * runs either way, once. */
    release_once(h->device, subscription);
    unhook(subscription);
    mmdrop(mm);
}

struct mmu_notifier *mmu_notifier_get_locked(const struct mmu_notifier_ops *ops, struct mm_struct *mm) {
    struct mmulab_linux_device *device = shim_mm(mm)->device;
    mmap_assert_write_locked(mm);
    struct mmu_notifier *found = NULL, *subscription;
    device->host->lock(device->lock);
    list_for_each_entry(subscription, &shim_mm(mm)->notifiers, mmulab_link) {
        /* users 0: its last put is unhooking it (Linux has already taken it off the list). */
        if (subscription->ops == ops && subscription->users > 0) {
            /* Linux refuses a count that would wrap rather than share past it. */
            if (subscription->users == UINT_MAX) {
                found = ERR_PTR(-EOVERFLOW);
            } else {
                subscription->users++;
                found = subscription;
            }
            break;
        }
    }
    device->host->unlock(device->lock);
    if (found) return found;
    if (WARN_ON(!ops->alloc_notifier || !ops->free_notifier)) return ERR_PTR(-EINVAL);
    subscription = ops->alloc_notifier(mm);
    if (IS_ERR(subscription)) return subscription;
    subscription->ops = ops;
    int result = __mmu_notifier_register(subscription, mm);
    if (result) {
        ops->free_notifier(subscription);
        return ERR_PTR(result);
    }
    return subscription;
}

struct mmu_notifier *mmu_notifier_get(const struct mmu_notifier_ops *ops, struct mm_struct *mm) {
    mmap_write_lock(mm);
    struct mmu_notifier *subscription = mmu_notifier_get_locked(ops, mm);
    mmap_write_unlock(mm);
    return subscription;
}

void mmu_notifier_put(struct mmu_notifier *subscription) {
    struct mmulab_subscription_handle *h = subscription->mmulab_subscription;
    if (WARN_ON(!h)) return;
    struct mmulab_linux_device *device = h->device;
    device->host->lock(device->lock);
    bool last = WARN_ON(subscription->users == 0) ? false : --subscription->users == 0;
    device->host->unlock(device->lock);
    if (!last) return;
    /* As Linux's put: no release; the free comes once no callback can run
     * (Linux defers it past an SRCU grace period; the host's unsubscribe
     * has already waited for the callbacks). */
    struct mm_struct *mm = subscription->mm;
    unhook(subscription);
    subscription->ops->free_notifier(subscription);
    mmdrop(mm);
}

void shim_notifiers_unhook(struct mmulab_linux_mm *m) {
    while (!list_empty(&m->notifiers)) {
        struct mmu_notifier *subscription = list_first_entry(&m->notifiers, struct mmu_notifier, mmulab_link);
        shim_log(m->device, MMULAB_LOG_MISBEHAVING, "an mmu_notifier was still registered when the device was destroyed");
        unhook(subscription);
    }
}
