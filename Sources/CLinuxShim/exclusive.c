/*
 * mmulab Linux shim: make_device_exclusive (<linux/rmap.h>) on the host's
 * make_exclusive (ABI 1.5).
 */
#include <stddef.h>

#include "internal.h"

#include <linux/err.h>
#include <linux/rmap.h>
#include <linux/sched.h>

static bool host_makes_exclusive(const mmulab_host *host) {
    return host->abi_minor >= 5 &&
           host->struct_size >= offsetof(mmulab_host, make_exclusive) + sizeof host->make_exclusive &&
           host->make_exclusive;
}

struct page *make_device_exclusive(struct mm_struct *mm, unsigned long addr, void *owner, struct folio **foliop) {
    struct mmulab_linux_device *device = shim_require_device("make_device_exclusive");
    if (WARN_ON(!mm || !foliop)) return ERR_PTR(-EINVAL);
    mmap_assert_locked(mm);
    shim_might_sleep(device, "make_device_exclusive()", "exclusive.c", __LINE__);
    if (!host_makes_exclusive(device->host)) {
        shim_log(device, MMULAB_LOG_ERROR, "make_device_exclusive needs the host's make_exclusive (ABI 1.5); this host "
                 "offers ABI 1.%u", (unsigned)device->host->abi_minor);
        return ERR_PTR(-EOPNOTSUPP);
    }
    uint64_t space = shim_mm(mm)->address_space;
    mmulab_pfn pfn = { 0 };
    mmulab_error error = { 0 };
    mmulab_status status = device->host->make_exclusive(device->ctx, space, addr & PAGE_MASK,
                                                        (uint64_t)(uintptr_t)owner, &pfn, &error);
    if (status != MMULAB_OK) return ERR_PTR(shim_errno_from_status(status));
    struct page *page = shim_page_intern(device, space, &pfn, false);
    if (!page) return ERR_PTR(-ENOMEM);
    if (!shim_page_lock_transient(page)) {
        shim_report(device, "BUG",
                    "make_device_exclusive of a page whose folio is still locked from an earlier call (never "
                    "folio_unlock'ed): Linux would wait for ever",
                    "exclusive.c", __LINE__, "make_device_exclusive");
        return ERR_PTR(-EDEADLK);
    }
    *foliop = page_folio(page);
    return page;
}
