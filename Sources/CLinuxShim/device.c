/*
 * mmulab Linux shim: device instances, the calling thread's scope
 * (`current`), reports (WARN_ON, printk), might_sleep, and the registry of
 * host objects the driver made.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

#include <linux/sched.h>

/* The scope of the calling thread (mmulab_linux_enter). */
static _Thread_local struct mmulab_linux_device *scope_device;
static _Thread_local struct task_struct scope_task;

struct mmulab_linux_device *shim_device(void) { return scope_device; }

struct mmulab_linux_device *shim_require_device(const char *service) {
    if (scope_device) return scope_device;
    fprintf(stderr,
            "mmulab linux shim: %s called outside any mmulab_linux_enter scope: the glue file must enter a scope "
            "around every call into the driver\n",
            service);
    abort();
}

struct task_struct *mmulab_linux_current(void) { return &scope_task; }

uint64_t shim_thread_id(struct mmulab_linux_device *device) { return device->host->thread_id(device->ctx); }

mmulab_linux_scope mmulab_linux_enter(struct mmulab_linux_device *device, struct mm_struct *mm) {
    mmulab_linux_scope saved = { .device = scope_device, .mm = scope_task.mm };
    scope_device = device;
    scope_task.mm = mm;
    if (device) {
        scope_task.pid = (pid_t)device->host->thread_id(device->ctx);
        snprintf(scope_task.comm, sizeof scope_task.comm, "%s", device->name);
    }
    return saved;
}

void mmulab_linux_leave(mmulab_linux_scope saved) {
    scope_device = saved.device;
    scope_task.mm = saved.mm;
}

/* ---------------------------------------------------------------------- */
/* Reports                                                                 */
/* ---------------------------------------------------------------------- */

void shim_log(struct mmulab_linux_device *device, int level, const char *format, ...) {
    char message[512];
    va_list arguments;
    va_start(arguments, format);
    vsnprintf(message, sizeof message, format, arguments);
    va_end(arguments);
    if (device) {
        device->host->log(device->ctx, level, message);
    } else {
        fprintf(stderr, "mmulab linux shim (no device): %s\n", message);
    }
}

void shim_report(struct mmulab_linux_device *device, const char *kind, const char *what, const char *file, int line,
                 const char *function) {
    /* One line a finding: what, where. The bug tracker folds the numbers
     * (the line) when it groups findings; the detail keeps them. */
    if (what && *what) {
        shim_log(device, MMULAB_LOG_MISBEHAVING, "%s: %s at %s:%d in %s()", kind, what, file, line, function);
    } else {
        shim_log(device, MMULAB_LOG_MISBEHAVING, "%s at %s:%d in %s()", kind, file, line, function);
    }
}

void mmulab_linux_report(const char *kind, const char *condition, const char *file, int line, const char *function) {
    shim_report(shim_device(), kind, condition, file, line, function);
}

void mmulab_linux_reportf(const char *kind, const char *file, int line, const char *function, const char *format, ...) {
    char what[400];
    va_list arguments;
    va_start(arguments, format);
    vsnprintf(what, sizeof what, format, arguments);
    va_end(arguments);
    shim_report(shim_device(), kind, what, file, line, function);
}

/* The level comes from the text as formatted, as Linux's
 * printk_parse_prefix reads it (so printk("%s...", KERN_ERR, ...), as
 * print_hex_dump does, has its level); without one a message takes
 * Linux's default message level, CONFIG_MESSAGE_LOGLEVEL_DEFAULT (4,
 * KERN_WARNING, unless configured). Returns what Linux's does: the length
 * stored, without the prefix and without the one trailing newline Linux
 * strips. */
int printk(const char *format, ...) {
    char message[512];
    va_list arguments;
    va_start(arguments, format);
    vsnprintf(message, sizeof message, format, arguments);
    va_end(arguments);
    int level = MMULAB_LOG_WARNING;
    const char *text = message;
    /* Every SOH pair in front: a level digit, 'c' (KERN_CONT) or 'd' (KERN_DEFAULT). */
    while (text[0] == KERN_SOH[0] && text[1] != '\0') {
        if (text[1] >= '0' && text[1] <= '7') {
            int kernel_level = text[1] - '0';
            level = kernel_level <= 3 ? MMULAB_LOG_ERROR
                  : kernel_level == 4 ? MMULAB_LOG_WARNING
                  : kernel_level <= 6 ? MMULAB_LOG_INFO
                                      : MMULAB_LOG_DEBUG;
        } else if (text[1] != 'c' && text[1] != 'd') {
            break;
        }
        text += 2;
    }
    /* printk lines end in a newline; the host log's entries do not. */
    size_t end = strlen(text);
    char stored[512];
    memcpy(stored, text, end + 1);
    if (end > 0 && stored[end - 1] == '\n') stored[--end] = '\0';
    shim_log(shim_device(), level, "%s", stored);
    return (int)end;
}

/* ---------------------------------------------------------------------- */
/* Sleeping                                                                */
/* ---------------------------------------------------------------------- */

void shim_might_sleep(struct mmulab_linux_device *device, const char *what, const char *file, int line) {
    if (!device || !device->host->in_non_blockable(device->ctx)) return;
    /* Where the driver did it, for the person reading the log... */
    shim_log(device, MMULAB_LOG_WARNING, "%s at %s:%d where the thread may not sleep", what, file, line);
    /* ...and the host's own record of it: a zero-length sleep is a sleep,
     * so the host reports "sleeping function called from invalid context"
     * with the callback and the non-blockable section it happened in. */
    device->host->sleep_ns(device->ctx, 0);
}

void mmulab_linux_might_sleep(const char *file, int line) { shim_might_sleep(shim_device(), "might_sleep()", file, line); }

void mmulab_linux_cond_resched(const char *file, int line) {
    struct mmulab_linux_device *device = shim_device();
    if (!device) return;
    shim_might_sleep(device, "cond_resched()", file, line);
    device->host->yield(device->ctx);
}

/* ---------------------------------------------------------------------- */
/* Errors                                                                  */
/* ---------------------------------------------------------------------- */

int shim_errno_from_status(mmulab_status status) {
    switch (status) {
    case MMULAB_OK: return 0;
    case MMULAB_RETRY: return -EAGAIN;
    case MMULAB_ERR_INVALID: return -EINVAL;
    case MMULAB_ERR_NO_MEMORY: return -ENOMEM;
    case MMULAB_ERR_FAULT: return -EFAULT;
    case MMULAB_ERR_NOT_SUPPORTED: return -EOPNOTSUPP;
    case MMULAB_ERR_BUSY: return -EBUSY;
    case MMULAB_ERR_KILLED: return -EFAULT; /* the address space is gone: nothing mapped */
    default: return -EIO;
    }
}

mmulab_status mmulab_linux_status(int linux_error) {
    switch (linux_error) {
    case 0: return MMULAB_OK;
    case -ENOMEM: return MMULAB_ERR_NO_MEMORY;
    case -EFAULT:
    case -ENOENT:
    case -EPERM:
    case -EACCES: return MMULAB_ERR_FAULT;
    case -EINVAL:
    case -ERANGE:
    case -EOVERFLOW: return MMULAB_ERR_INVALID;
    case -EBUSY:
    case -EAGAIN:
    case -ETIMEDOUT: return MMULAB_ERR_BUSY;
    case -EOPNOTSUPP:
    case -ENOTSUPP:
    case -ENOSYS: return MMULAB_ERR_NOT_SUPPORTED;
    case -ESRCH: return MMULAB_ERR_KILLED;
    default: return MMULAB_ERR_INTERNAL;
    }
}

mmulab_status mmulab_linux_fail(mmulab_error *error, int linux_error, const char *what) {
    mmulab_status status = mmulab_linux_status(linux_error);
    if (error && status != MMULAB_OK) {
        error->status = status;
        snprintf(error->message, sizeof error->message, "%s: error %d", what, linux_error);
    }
    return status;
}

static mmulab_status fail(mmulab_error *error, mmulab_status status, const char *message) {
    if (error) {
        error->status = status;
        snprintf(error->message, sizeof error->message, "%s", message);
    }
    return status;
}

/* ---------------------------------------------------------------------- */
/* Devices                                                                 */
/* ---------------------------------------------------------------------- */

mmulab_status mmulab_linux_device_create(const mmulab_host *host, const char *name, struct mmulab_linux_device **out,
                                         mmulab_error *error) {
    if (!host || !out) return fail(error, MMULAB_ERR_INVALID, "mmulab_linux_device_create: no host or no out");
    /* The shim reads the host's clock and thread ids (ABI 1.4). */
    if (host->struct_size < offsetof(mmulab_host, thread_id) + sizeof host->thread_id || host->abi_minor < 4) {
        return fail(error, MMULAB_ERR_NOT_SUPPORTED, "the Linux shim needs a host with ABI 1.4 (thread services)");
    }
    struct mmulab_linux_device *device = calloc(1, sizeof *device);
    if (!device) return fail(error, MMULAB_ERR_NO_MEMORY, "out of memory");
    device->host = host;
    device->ctx = host->context;
    snprintf(device->name, sizeof device->name, "%s", name ? name : "linux-shim");
    device->lock = host->lock_create(host->context, "linux shim registry", MMULAB_LOCK_SPIN);
    device->page_lock = host->lock_create(host->context, "linux shim pages", MMULAB_LOCK_SPIN);
    if (!device->lock || !device->page_lock) {
        if (device->lock) host->lock_destroy(device->lock);
        if (device->page_lock) host->lock_destroy(device->page_lock);
        free(device);
        return fail(error, MMULAB_ERR_NO_MEMORY, "could not make the shim's locks");
    }
    shim_xa_init_internal(&device->objects);
    shim_xa_init_internal(&device->mms);
    INIT_LIST_HEAD(&device->zombies);
    *out = device;
    return MMULAB_OK;
}

void mmulab_linux_device_destroy(struct mmulab_linux_device *device) {
    if (!device) return;
    mmulab_linux_scope scope = mmulab_linux_enter(device, NULL);
    shim_mms_free(device);
    /* Every object still registered: its memory was never kfree'd (a
     * driver structure on the stack, or leaked). */
    unsigned long index = 0;
    for (void *entry = shim_xa_find(&device->objects, &index, ULONG_MAX, false); entry;
         entry = shim_xa_find(&device->objects, &index, ULONG_MAX, true)) {
        shim_object_destroy(entry);
    }
    xa_destroy(&device->objects);
    xa_destroy(&device->mms);
    shim_pages_free(device);
    long leaked = __atomic_load_n(&device->allocations, __ATOMIC_RELAXED);
    if (leaked > 0) {
        shim_log(device, MMULAB_LOG_MISBEHAVING, "kmemleak: %ld kmalloc allocation(s), %ld bytes, never freed", leaked,
                 __atomic_load_n(&device->allocated_bytes, __ATOMIC_RELAXED));
    }
    mmulab_linux_leave(scope);
    device->host->lock_destroy(device->lock);
    device->host->lock_destroy(device->page_lock);
    free(device);
}

/* ---------------------------------------------------------------------- */
/* The registry of host objects                                            */
/* ---------------------------------------------------------------------- */

static unsigned long object_key(const void *address) { return (unsigned long)address >> 3; }

struct mmulab_linux_object *shim_object_make(const void *address, enum shim_object_kind kind, const char *name) {
    struct mmulab_linux_device *device = shim_require_device("a lock, completion or wait queue's init");
    const mmulab_host *host = device->host;
    struct mmulab_linux_object *object = calloc(1, sizeof *object);
    if (!object) {
        shim_log(device, MMULAB_LOG_ERROR, "out of memory making '%s'", name);
        abort();
    }
    object->kind = kind;
    object->device = device;
    object->address = address;
    snprintf(object->name, sizeof object->name, "%s", name);
    switch (kind) {
    case SHIM_SPIN: object->lock = host->lock_create(device->ctx, object->name, MMULAB_LOCK_SPIN); break;
    case SHIM_MUTEX: object->lock = host->lock_create(device->ctx, object->name, MMULAB_LOCK_SLEEPING); break;
    case SHIM_RWSEM:
        object->lock = host->lock_create(device->ctx, object->name, MMULAB_LOCK_SLEEPING);
        object->guard = host->lock_create(device->ctx, "rwsem count", MMULAB_LOCK_SPIN);
        object->completion = host->completion_create(device->ctx, object->name);
        break;
    case SHIM_COMPLETION: object->completion = host->completion_create(device->ctx, object->name); break;
    case SHIM_WAITQ:
        object->guard = host->lock_create(device->ctx, "wait queue", MMULAB_LOCK_SPIN);
        object->completion = host->completion_create(device->ctx, object->name);
        break;
    }
    /* A structure initialised again at the same address (a lock re-inited,
     * a stack object in a later call) replaces what it named before. */
    host->lock(device->lock);
    void *old = shim_xa_store(&device->objects, object_key(address), object);
    host->unlock(device->lock);
    if (xa_is_err(old)) {
        shim_log(device, MMULAB_LOG_ERROR, "out of memory registering '%s'", name);
        abort();
    }
    if (old) shim_object_destroy(old);
    return object;
}

/* Whether the object is held now (then it must not be destroyed). */
static bool object_is_held(struct mmulab_linux_object *object) {
    switch (object->kind) {
    case SHIM_SPIN:
    case SHIM_MUTEX: return __atomic_load_n(&object->owner, __ATOMIC_ACQUIRE) != 0;
    case SHIM_RWSEM:
        return __atomic_load_n(&object->owner, __ATOMIC_ACQUIRE) != 0 ||
               __atomic_load_n(&object->readers, __ATOMIC_ACQUIRE) != 0;
    default: return false;
    }
}

void shim_object_destroy(struct mmulab_linux_object *object) {
    const mmulab_host *host = object->device->host;
    if (object_is_held(object)) {
        /* Linux's debug_check_no_locks_freed: the memory of a held lock
         * went away. The host lock stays (a thread may still unlock it). */
        shim_log(object->device, MMULAB_LOG_MISBEHAVING, "BUG: held lock freed: '%s'", object->name);
        return;
    }
    if (object->lock) host->lock_destroy(object->lock);
    if (object->guard) host->lock_destroy(object->guard);
    if (object->completion) host->completion_destroy(object->completion);
    free(object);
}

void shim_object_forget(struct mmulab_linux_object *object) {
    struct mmulab_linux_device *device = object->device;
    device->host->lock(device->lock);
    if (shim_xa_load(&device->objects, object_key(object->address)) == object) {
        shim_xa_store(&device->objects, object_key(object->address), NULL);
    }
    device->host->unlock(device->lock);
}

void shim_objects_release_range(struct mmulab_linux_device *device, const void *address, size_t size,
                                const char *file, int line) {
    if (size == 0) return;
    struct mmulab_linux_object *found[16];
    unsigned long first = object_key(address), last = object_key((const char *)address + size - 1);
    for (;;) {
        int count = 0;
        device->host->lock(device->lock);
        unsigned long index = first;
        for (void *entry = shim_xa_find(&device->objects, &index, last, false); entry && count < 16;
             entry = shim_xa_find(&device->objects, &index, last, true)) {
            found[count++] = entry;
        }
        for (int i = 0; i < count; i++) shim_xa_store(&device->objects, object_key(found[i]->address), NULL);
        device->host->unlock(device->lock);
        for (int i = 0; i < count; i++) {
            if (object_is_held(found[i])) {
                shim_log(device, MMULAB_LOG_MISBEHAVING, "BUG: held lock freed: '%s' in memory freed at %s:%d",
                         found[i]->name, file, line);
                continue;
            }
            shim_object_destroy(found[i]);
        }
        if (count < 16) return;
    }
}

void shim_objects_move_range(struct mmulab_linux_device *device, const void *from, const void *to, size_t size) {
    if (size == 0) return;
    unsigned long first = object_key(from), last = object_key((const char *)from + size - 1);
    device->host->lock(device->lock);
    unsigned long index = first;
    void *entry = shim_xa_find(&device->objects, &index, last, false);
    while (entry) {
        struct mmulab_linux_object *object = entry;
        shim_xa_store(&device->objects, index, NULL);
        object->address = (const char *)to + ((const char *)object->address - (const char *)from);
        void *old = shim_xa_store(&device->objects, object_key(object->address), object);
        /* The new block is fresh memory: nothing was registered in it. */
        if (old && !xa_is_err(old)) shim_object_destroy(old);
        entry = shim_xa_find(&device->objects, &index, last, true);
    }
    device->host->unlock(device->lock);
}
