/*
 * mmulab Linux shim: what the one glue file of a driver uses to plug the
 * driver into the lab. Kernel-style code never includes this: it sees only
 * <linux/...>. The glue file declares the plugin (mmulab_device_plugin.h)
 * and maps the lab's create / attach / access / detach / destroy onto the
 * driver's own probe, open, read/write ioctl and release, inside an
 * mmulab_linux_enter / mmulab_linux_leave scope each:
 *
 *     static mmulab_status attach(void *instance, const mmulab_binding_desc *desc, void **out, mmulab_error *error) {
 *         struct my_device *dev = instance;
 *         struct mm_struct *mm = mmulab_linux_mm_get(dev->shim, desc->address_space, error);
 *         if (!mm) return error->status;
 *         mmulab_linux_scope scope = mmulab_linux_enter(dev->shim, mm);
 *         int ret = my_driver_open(...);          // current->mm is `mm` here
 *         mmulab_linux_leave(scope);
 *         ...
 *     }
 *
 * The shim needs ABI 1.4 (thread_id and now_ns: lock owners and jiffies):
 * mmulab_linux_device_create refuses an older host table.
 */
#ifndef MMULAB_LINUX_GLUE_H
#define MMULAB_LINUX_GLUE_H

#include "mmulab_device_plugin.h"

#include <linux/mm_types.h>

#ifdef __cplusplus
extern "C" {
#endif

/* The lowest ABI minor the shim works with. */
#define MMULAB_LINUX_ABI_MINOR 4

/* One plugin instance as the shim sees it: its host, its registries (the
 * mm of each address space, the page handles, the locks the driver made). */
struct mmulab_linux_device;

/* [blockable] Makes the shim's side of an instance on `host` (which must
 * stay valid until destroy). `name` names it in reports. */
mmulab_status mmulab_linux_device_create(const mmulab_host *host, const char *name, struct mmulab_linux_device **out,
                                         mmulab_error *error);

/* [blockable] Frees what the shim keeps for the instance: its mm_structs,
 * page handles and lock objects. Reports, as findings, what the driver
 * left behind: kmalloc'd memory not freed, pins not returned, mm
 * references not dropped. Call it last, with no other call in progress. */
void mmulab_linux_device_destroy(struct mmulab_linux_device *device);

/* What a scope replaced, to restore when it ends. */
typedef struct mmulab_linux_scope {
    struct mmulab_linux_device *device;
    struct mm_struct *mm;
} mmulab_linux_scope;

/* [any-thread] From here until the matching leave, the calling thread
 * works for `device`, with current->mm = `mm` (may be NULL). Scopes nest
 * (the shim's own callbacks open one, as a callback may run inside a call
 * into another plugin). */
mmulab_linux_scope mmulab_linux_enter(struct mmulab_linux_device *device, struct mm_struct *mm);
void mmulab_linux_leave(mmulab_linux_scope saved);

/* [blockable] The mm_struct of `address_space` for `device`, with a
 * reference (mmgrab) the caller drops with mmdrop, inside a scope. The
 * same address space always gives the same mm while a reference is held.
 * NULL, with `error` filled, if it cannot be made (the address space has
 * exited, or no memory). */
struct mm_struct *mmulab_linux_mm_get(struct mmulab_linux_device *device, uint64_t address_space,
                                      mmulab_error *error);

/* [blockable] The plugin's migrate_to_ram (ABI 1.6), for the glue's
 * descriptor: a CPU access reached `address` of `address_space`, a page in
 * the device memory memremap_pages made. Calls the pagemap's
 * ops->migrate_to_ram with a struct vm_fault (vma, address, the device
 * page) in a scope with that mm, holding mmap_read_lock as Linux's fault
 * path does; answers MMULAB_OK if it returned 0. MMULAB_ERR_NOT_SUPPORTED
 * (the host brings the page home itself) when there is no pagemap, no
 * migrate_to_ram, or no mm for the address space (never attached). */
mmulab_status mmulab_linux_migrate_to_ram(struct mmulab_linux_device *device, uint64_t address_space, uint64_t address,
                                          mmulab_error *error);

/* The lab's address space an mm stands for. */
uint64_t mmulab_linux_mm_address_space(const struct mm_struct *mm);

/* A driver's negative errno as the ABI's status, and into `error` with
 * `what` (errno 0 is MMULAB_OK and leaves `error` alone). */
mmulab_status mmulab_linux_status(int linux_error);
mmulab_status mmulab_linux_fail(mmulab_error *error, int linux_error, const char *what);

#ifdef __cplusplus
}
#endif

#endif /* MMULAB_LINUX_GLUE_H */
