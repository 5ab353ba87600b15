/*
 * mmulab Linux shim: <linux/mmu_notifier.h>.
 *
 * Both kinds of subscription of Linux, on the host's:
 *
 * struct mmu_notifier (a whole address space; host->subscribe). Its ops
 * are called as Linux calls them: invalidate_range_start answers 0, or
 * -EAGAIN only when the range is not blockable (any other answer is
 * reported as a WARN and taken as a refusal, as Linux's
 * mn_hlist_invalidate_range_start does; -EAGAIN to a blockable range is
 * the host's "retry from a blockable start" finding); invalidate_range_end
 * follows only a start that answered 0; clear_flush_young (or, if the
 * driver has none, clear_young) is what reclaim calls to age a page
 * (the host's clear_young: flush what you found young); test_young;
 * release when the address space exits (or at mmu_notifier_unregister if
 * it had not yet); arch_invalidate_secondary_tlbs where the primary
 * flushes its TLB (host->invalidate_secondary_tlbs). change_pte (removed
 * in Linux 6.10) is not there.
 *
 * struct mmu_interval_notifier (an interval; host->interval_insert): the
 * invalidate op gets the range and the sequence to pass to
 * mmu_interval_set_seq under the driver's lock; for a non-blockable range
 * it must not sleep and may return false. The read side is Linux's:
 *
 *     seq = mmu_interval_read_begin(sub);   // may sleep while invalidated
 *     ... hmm_range_fault ...
 *     lock the driver's page table
 *     if (mmu_interval_read_retry(sub, seq)) { unlock; retry; }
 *     install; unlock
 *
 * Event reasons: the lab's are mapped to enum mmu_notifier_event as the
 * README's table says (munmap, mremap and the OOM reaper: UNMAP; DONTNEED,
 * reclaim, KSM, COW break and ordinary migration: CLEAR; mprotect:
 * PROTECTION_VMA; write-protect: PROTECTION_PAGE; soft-dirty: SOFT_DIRTY;
 * a device migration, with its owner: MIGRATE; exit: RELEASE; exclusive:
 * EXCLUSIVE). range->owner is the host's owner cookie as a pointer.
 *
 * mmu_notifier_get/put share one notifier per ops and mm (alloc_notifier
 * makes it, free_notifier frees it when the last put unregisters it; the
 * free happens in the put, after no callback can be running). Every call
 * here that registers or unregisters may sleep.
 */
#ifndef MMULAB_LINUX_MMU_NOTIFIER_H
#define MMULAB_LINUX_MMU_NOTIFIER_H

#include <linux/interval_tree.h>
#include <linux/list.h>
#include <linux/mm_types.h>
#include <linux/mmap_lock.h>
#include <linux/types.h>

struct mmu_notifier;
struct mmu_interval_notifier;

enum mmu_notifier_event {
    MMU_NOTIFY_UNMAP = 0,
    MMU_NOTIFY_CLEAR,
    MMU_NOTIFY_PROTECTION_VMA,
    MMU_NOTIFY_PROTECTION_PAGE,
    MMU_NOTIFY_SOFT_DIRTY,
    MMU_NOTIFY_RELEASE,
    MMU_NOTIFY_MIGRATE,
    MMU_NOTIFY_EXCLUSIVE,
};

#define MMU_NOTIFIER_RANGE_BLOCKABLE (1 << 0)

struct mmu_notifier_range {
    struct mm_struct *mm;
    unsigned long start;
    unsigned long end;
    unsigned flags;
    enum mmu_notifier_event event;
    void *owner;
};

static inline bool mmu_notifier_range_blockable(const struct mmu_notifier_range *range) {
    return (range->flags & MMU_NOTIFIER_RANGE_BLOCKABLE) != 0;
}

struct mmu_notifier_ops {
    void (*release)(struct mmu_notifier *subscription, struct mm_struct *mm);
    int (*clear_flush_young)(struct mmu_notifier *subscription, struct mm_struct *mm, unsigned long start,
                             unsigned long end);
    int (*clear_young)(struct mmu_notifier *subscription, struct mm_struct *mm, unsigned long start,
                       unsigned long end);
    int (*test_young)(struct mmu_notifier *subscription, struct mm_struct *mm, unsigned long address);
    int (*invalidate_range_start)(struct mmu_notifier *subscription, const struct mmu_notifier_range *range);
    void (*invalidate_range_end)(struct mmu_notifier *subscription, const struct mmu_notifier_range *range);
    void (*arch_invalidate_secondary_tlbs)(struct mmu_notifier *subscription, struct mm_struct *mm,
                                           unsigned long start, unsigned long end);
    struct mmu_notifier *(*alloc_notifier)(struct mm_struct *mm);
    void (*free_notifier)(struct mmu_notifier *subscription);
};

struct mmulab_subscription_handle;

struct mmu_notifier {
    const struct mmu_notifier_ops *ops;
    struct mm_struct *mm;
    unsigned int users;
    /* The shim's. */
    struct mmulab_subscription_handle *mmulab_subscription;
    struct list_head mmulab_link;
    bool mmulab_released;
};

int mmu_notifier_register(struct mmu_notifier *subscription, struct mm_struct *mm);
int __mmu_notifier_register(struct mmu_notifier *subscription, struct mm_struct *mm);
void mmu_notifier_unregister(struct mmu_notifier *subscription, struct mm_struct *mm);
struct mmu_notifier *mmu_notifier_get_locked(const struct mmu_notifier_ops *ops, struct mm_struct *mm);
struct mmu_notifier *mmu_notifier_get(const struct mmu_notifier_ops *ops, struct mm_struct *mm);
void mmu_notifier_put(struct mmu_notifier *subscription);

struct mmu_interval_notifier_ops {
    bool (*invalidate)(struct mmu_interval_notifier *interval_sub, const struct mmu_notifier_range *range,
                       unsigned long cur_seq);
};

struct mmulab_interval_handle;

struct mmu_interval_notifier {
    struct interval_tree_node interval;
    const struct mmu_interval_notifier_ops *ops;
    struct mm_struct *mm;
    /* The shim's. */
    struct mmulab_interval_handle *mmulab_interval;
};

int mmu_interval_notifier_insert(struct mmu_interval_notifier *interval_sub, struct mm_struct *mm,
                                 unsigned long start, unsigned long length,
                                 const struct mmu_interval_notifier_ops *ops);
int mmu_interval_notifier_insert_locked(struct mmu_interval_notifier *interval_sub, struct mm_struct *mm,
                                        unsigned long start, unsigned long length,
                                        const struct mmu_interval_notifier_ops *ops);
void mmu_interval_notifier_remove(struct mmu_interval_notifier *interval_sub);
unsigned long mmu_interval_read_begin(struct mmu_interval_notifier *interval_sub);
/* Call under the lock the invalidate op takes: whether to retry. */
bool mmu_interval_read_retry(struct mmu_interval_notifier *interval_sub, unsigned long seq);
/* The same test without the lock: an early hint only. */
bool mmu_interval_check_retry(struct mmu_interval_notifier *interval_sub, unsigned long seq);
/* Only from the invalidate op, under the driver's lock. */
void mmu_interval_set_seq(struct mmu_interval_notifier *interval_sub, unsigned long cur_seq);

#endif /* MMULAB_LINUX_MMU_NOTIFIER_H */
