/*
 * mmulab Linux shim: <linux/rmap.h>: make_device_exclusive.
 *
 * make_device_exclusive(mm, addr, owner, &folio) takes the page at `addr`
 * exclusive for the device, for atomics the CPU must not interleave with
 * (Linux since 6.15; the host's make_exclusive, ABI 1.5): the page is
 * faulted in writable, then its entry becomes a device-exclusive one under
 * an MMU_NOTIFY_EXCLUSIVE invalidation carrying `owner` (range->owner),
 * which the driver's own notifier skips and every other device follows.
 * Returns the page, locked and with a reference, and its folio in *foliop:
 * install the device's entry under the notifier lock if
 * mmu_interval_read_retry says no invalidation raced, then folio_unlock
 * and folio_put. The reference holds nothing in the lab (the host hands
 * out none; the exclusive entry keeps the page mapped): it is only counted,
 * so the folio_put balances it. The caller holds mmap_read_lock
 * (asserted); it may sleep. Any CPU access to the page, another device's
 * fault, fork, reclaim or migration gives the page back with an
 * invalidation that does not carry the owner (MMU_NOTIFY_EXCLUSIVE, or the
 * operation's own event): drop the entry then. Errors, as ERR_PTR:
 *   -EFAULT      the address is not mapped writable;
 *   -EBUSY       the page kept changing;
 *   -EOPNOTSUPP  the host is older than ABI 1.5 (logged);
 *   -EINVAL      the address is outside the address space.
 * A second call on a page whose folio is still locked from the first is a
 * BUG report (Linux would wait for ever).
 */
#ifndef MMULAB_LINUX_RMAP_H
#define MMULAB_LINUX_RMAP_H

#include <linux/mm.h>
#include <linux/pagemap.h>

struct page *make_device_exclusive(struct mm_struct *mm, unsigned long addr, void *owner, struct folio **foliop);

#endif /* MMULAB_LINUX_RMAP_H */
