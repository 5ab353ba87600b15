/*
 * mmulab Linux shim: <linux/hmm.h>.
 *
 * hmm_range_fault(range) faults [range->start, range->end) of
 * range->notifier's mm in through the primary MMU (host->fault_range) and
 * fills range->hmm_pfns, one entry a page: the page handle with
 * HMM_PFN_VALID, and HMM_PFN_WRITE where the primary maps it writable.
 * Each entry's request is (entry & pfn_flags_mask) | default_flags:
 * HMM_PFN_REQ_FAULT faults the page in, HMM_PFN_REQ_WRITE for writing. The
 * caller holds mmap_read_lock on the mm (asserted, as Linux's
 * mmap_assert_locked does) and has taken range->notifier_seq with
 * mmu_interval_read_begin. Returns 0, or:
 *   -EBUSY   the interval's sequence moved (an invalidation ran) since
 *            mmu_interval_read_begin: begin again;
 *   -EFAULT  an address is not mapped, or not with the permission asked
 *            (or the address space has exited);
 *   -ENOMEM  the primary ran out of memory;
 *   -EINVAL  the range is empty or not page aligned;
 *   -EOPNOTSUPP  a page was requested without HMM_PFN_REQ_FAULT on a host
 *            older than ABI 1.6 (which has no lookup without faulting):
 *            refused, with an error in the host log.
 * An entry whose request has no HMM_PFN_REQ_FAULT is not faulted (Linux's
 * snapshot mode): it is HMM_PFN_VALID (and HMM_PFN_WRITE) where the
 * primary maps a page now, and 0 where it maps nothing the device could use
 * (not present, swapped out, PROT_NONE, device-exclusive, another device's
 * page); HMM_PFN_REQ_WRITE without HMM_PFN_REQ_FAULT faults nothing either.
 * A page of a huge (PMD) mapping carries the map order PMD_SHIFT -
 * PAGE_SHIFT (9): hmm_pfn_to_map_order says the aligned 2 MiB around it is
 * one mapping the device may map with one entry (every change to any of it
 * is first an invalidation of the whole 2 MiB).
 * As in Linux, the entries are only a snapshot: an invalidation that comes
 * while or after they are read is not seen here. Install them under the
 * driver's lock after mmu_interval_read_retry says nothing raced.
 *
 * The page number bits of an entry hold the shim's page handle, not the
 * frame number: decode an entry with hmm_pfn_to_page, as Linux drivers do
 * (page_to_pfn gives the frame). dev_private_owner: a page in the device
 * memory memremap_pages made (<linux/memremap.h>) is reported as a
 * device-private page (is_device_private_page) when dev_private_owner is
 * the pagemap's owner; otherwise it is brought home first where a fault
 * is asked for (Linux faults it through the pagemap's migrate_to_ram; here
 * the host's migrate_to_host, with the owner in its invalidation) and is 0
 * in a snapshot. Device memory a glue file made itself (no pagemap) is
 * always reported as the device's own, as the host does.
 */
#ifndef MMULAB_LINUX_HMM_H
#define MMULAB_LINUX_HMM_H

#include <linux/mm.h>
#include <linux/mmu_notifier.h>
#include <linux/types.h>

#define HMM_PFN_VALID (1UL << 63)
#define HMM_PFN_WRITE (1UL << 62)
#define HMM_PFN_ERROR (1UL << 61)
#define HMM_PFN_ORDER_SHIFT 56
#define HMM_PFN_REQ_FAULT HMM_PFN_VALID
#define HMM_PFN_REQ_WRITE HMM_PFN_WRITE
#define HMM_PFN_FLAGS (0xFFUL << HMM_PFN_ORDER_SHIFT)

#define HMM_RANGE_DEFAULT_TIMEOUT 1000

struct hmm_range {
    struct mmu_interval_notifier *notifier;
    unsigned long notifier_seq;
    unsigned long start;
    unsigned long end;
    unsigned long *hmm_pfns;
    unsigned long default_flags;
    unsigned long pfn_flags_mask;
    void *dev_private_owner;
};

int hmm_range_fault(struct hmm_range *range);

static inline struct page *hmm_pfn_to_page(unsigned long hmm_pfn) { return (struct page *)(hmm_pfn & ~HMM_PFN_FLAGS); }
static inline unsigned long hmm_pfn_to_phys(unsigned long hmm_pfn) {
    return page_to_pfn(hmm_pfn_to_page(hmm_pfn)) << PAGE_SHIFT;
}
#define HMM_PFN_ORDER_MASK (0x1FUL << HMM_PFN_ORDER_SHIFT)
static inline unsigned int hmm_pfn_to_map_order(unsigned long hmm_pfn) {
    return (unsigned int)((hmm_pfn >> HMM_PFN_ORDER_SHIFT) & 0x1F);
}
static inline unsigned long hmm_pfn_flags_order(unsigned long order) { return order << HMM_PFN_ORDER_SHIFT; }

#endif /* MMULAB_LINUX_HMM_H */
