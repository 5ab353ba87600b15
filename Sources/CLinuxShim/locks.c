/*
 * mmulab Linux shim: spinlock_t, struct mutex and struct rw_semaphore on
 * the host's locks and completions (see their headers for the rules).
 *
 * Each lock records its holder's host thread id, for lockdep_assert_held
 * and for catching an unlock by a thread that does not hold it. The owner
 * is written after the host lock is taken and cleared before it is let go,
 * so only the holder ever writes it.
 */
#include "internal.h"

#include <linux/mutex.h>
#include <linux/rwsem.h>
#include <linux/spinlock.h>

/* The object a lock names, made (and the omission reported) if the driver
 * never initialised it. Two threads racing here agree on one object. */
static struct mmulab_linux_object *object_of(struct mmulab_linux_object **slot, const void *address,
                                             enum shim_object_kind kind, const char *what, const char *file,
                                             int line) {
    struct mmulab_linux_object *object = __atomic_load_n(slot, __ATOMIC_ACQUIRE);
    if (object) return object;
    shim_report(shim_require_device(what), "BUG", "lock used before it was initialised", file, line, what);
    struct mmulab_linux_object *made = shim_object_make(address, kind, "uninitialised lock");
    struct mmulab_linux_object *expected = NULL;
    if (__atomic_compare_exchange_n(slot, &expected, made, false, __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE)) return made;
    shim_object_forget(made);
    shim_object_destroy(made);
    return expected;
}

static uint64_t me(struct mmulab_linux_object *object) { return shim_thread_id(object->device); }

static void set_owner(struct mmulab_linux_object *object, uint64_t owner) {
    __atomic_store_n(&object->owner, owner, __ATOMIC_RELEASE);
}

static bool held_by_me(struct mmulab_linux_object *object) {
    return object && __atomic_load_n(&object->owner, __ATOMIC_ACQUIRE) == me(object);
}

/* ---------------------------------------------------------------------- */
/* spinlock_t                                                              */
/* ---------------------------------------------------------------------- */

void mmulab_linux_spin_lock_init(spinlock_t *lock, const char *name) {
    lock->mmulab_object = shim_object_make(lock, SHIM_SPIN, name);
}

static struct mmulab_linux_object *spin_object(spinlock_t *lock, const char *file, int line) {
    return object_of(&lock->mmulab_object, lock, SHIM_SPIN, "spin_lock", file, line);
}

void mmulab_linux_spin_lock(spinlock_t *lock, const char *file, int line) {
    struct mmulab_linux_object *object = spin_object(lock, file, line);
    if (held_by_me(object)) {
        shim_report(object->device, "BUG", "spinlock recursion (the thread already holds it)", file, line, "spin_lock");
    }
    object->device->host->lock(object->lock);
    set_owner(object, me(object));
}

int mmulab_linux_spin_trylock(spinlock_t *lock, const char *file, int line) {
    struct mmulab_linux_object *object = spin_object(lock, file, line);
    if (!object->device->host->trylock(object->lock)) return 0;
    set_owner(object, me(object));
    return 1;
}

void mmulab_linux_spin_unlock(spinlock_t *lock, const char *file, int line) {
    struct mmulab_linux_object *object = spin_object(lock, file, line);
    if (!held_by_me(object)) {
        /* The host lock is left as it is: unlocking another thread's lock
         * would break the host's own bookkeeping of non-blockable sections. */
        shim_report(object->device, "BUG", "spin_unlock of a lock the thread does not hold", file, line, "spin_unlock");
        return;
    }
    set_owner(object, 0);
    object->device->host->unlock(object->lock);
}

bool mmulab_linux_spin_is_held_by_me(spinlock_t *lock) { return held_by_me(lock->mmulab_object); }

bool mmulab_linux_spin_is_locked(spinlock_t *lock) {
    return lock->mmulab_object && __atomic_load_n(&lock->mmulab_object->owner, __ATOMIC_ACQUIRE) != 0;
}

/* ---------------------------------------------------------------------- */
/* struct mutex                                                            */
/* ---------------------------------------------------------------------- */

void mmulab_linux_mutex_init(struct mutex *lock, const char *name) {
    lock->mmulab_object = shim_object_make(lock, SHIM_MUTEX, name);
}

static struct mmulab_linux_object *mutex_object(struct mutex *lock, const char *file, int line) {
    return object_of(&lock->mmulab_object, lock, SHIM_MUTEX, "mutex_lock", file, line);
}

void mmulab_linux_mutex_lock(struct mutex *lock, const char *file, int line) {
    struct mmulab_linux_object *object = mutex_object(lock, file, line);
    if (held_by_me(object)) {
        /* Linux deadlocks here; lockdep says why. The lab says it, then deadlocks too. */
        shim_report(object->device, "BUG", "recursive mutex_lock (the thread already holds it)", file, line,
                    "mutex_lock");
    }
    /* The host's sleeping lock checks the context (might_sleep). */
    object->device->host->lock(object->lock);
    set_owner(object, me(object));
}

int mmulab_linux_mutex_trylock(struct mutex *lock, const char *file, int line) {
    struct mmulab_linux_object *object = mutex_object(lock, file, line);
    if (!object->device->host->trylock(object->lock)) return 0;
    set_owner(object, me(object));
    return 1;
}

void mmulab_linux_mutex_unlock(struct mutex *lock, const char *file, int line) {
    struct mmulab_linux_object *object = mutex_object(lock, file, line);
    if (!held_by_me(object)) {
        shim_report(object->device, "BUG", "mutex_unlock of a mutex the thread does not hold", file, line,
                    "mutex_unlock");
        return;
    }
    set_owner(object, 0);
    object->device->host->unlock(object->lock);
}

bool mmulab_linux_mutex_is_locked(struct mutex *lock) {
    return lock->mmulab_object && __atomic_load_n(&lock->mmulab_object->owner, __ATOMIC_ACQUIRE) != 0;
}

bool mmulab_linux_mutex_is_held_by_me(struct mutex *lock) { return held_by_me(lock->mmulab_object); }

void mmulab_linux_mutex_destroy(struct mutex *lock) {
    struct mmulab_linux_object *object = lock->mmulab_object;
    if (!object) return;
    if (WARN_ON(mmulab_linux_mutex_is_locked(lock))) return; /* DEBUG_MUTEXES: destroying a locked mutex */
    shim_object_forget(object);
    shim_object_destroy(object);
    lock->mmulab_object = NULL;
}

/* ---------------------------------------------------------------------- */
/* struct rw_semaphore                                                     */
/*                                                                         */
/* object->lock is the gate: a writer holds it while it writes; a reader   */
/* holds it only to come in. object->readers counts the readers inside;    */
/* a writer that took the gate while readers were inside waits on          */
/* object->completion, which the last reader out completes.                */
/* ---------------------------------------------------------------------- */

void mmulab_linux_init_rwsem(struct rw_semaphore *sem, const char *name) {
    sem->mmulab_object = shim_object_make(sem, SHIM_RWSEM, name);
}

static struct mmulab_linux_object *rwsem_object(struct rw_semaphore *sem, const char *file, int line) {
    return object_of(&sem->mmulab_object, sem, SHIM_RWSEM, "down_read/down_write", file, line);
}

static void reader_in(struct mmulab_linux_object *object) {
    const mmulab_host *host = object->device->host;
    host->lock(object->guard);
    __atomic_store_n(&object->readers, object->readers + 1, __ATOMIC_RELEASE);
    host->unlock(object->guard);
}

void mmulab_linux_down_read(struct rw_semaphore *sem, const char *file, int line) {
    struct mmulab_linux_object *object = rwsem_object(sem, file, line);
    if (held_by_me(object)) {
        shim_report(object->device, "BUG", "down_read by the thread that holds it for writing", file, line, "down_read");
    }
    const mmulab_host *host = object->device->host;
    host->lock(object->lock); /* may sleep: the host checks the context */
    reader_in(object);
    host->unlock(object->lock);
}

int mmulab_linux_down_read_trylock(struct rw_semaphore *sem, const char *file, int line) {
    struct mmulab_linux_object *object = rwsem_object(sem, file, line);
    const mmulab_host *host = object->device->host;
    if (!host->trylock(object->lock)) return 0;
    reader_in(object);
    host->unlock(object->lock);
    return 1;
}

void mmulab_linux_up_read(struct rw_semaphore *sem, const char *file, int line) {
    struct mmulab_linux_object *object = rwsem_object(sem, file, line);
    const mmulab_host *host = object->device->host;
    host->lock(object->guard);
    if (object->readers <= 0) {
        host->unlock(object->guard);
        shim_report(object->device, "BUG", "up_read of a rw_semaphore no one holds for reading", file, line, "up_read");
        return;
    }
    __atomic_store_n(&object->readers, object->readers - 1, __ATOMIC_RELEASE);
    bool wake = object->readers == 0 && object->writer_waiting;
    if (wake) object->writer_waiting = false;
    host->unlock(object->guard);
    /* The writer set writer_waiting under the guard before it waits, and
     * only one writer waits (it holds the gate): one completion, one wake. */
    if (wake) host->completion_complete(object->completion);
}

/* With the gate held: waits for the readers inside to leave. */
static void wait_for_readers(struct mmulab_linux_object *object) {
    const mmulab_host *host = object->device->host;
    host->lock(object->guard);
    while (object->readers > 0) {
        object->writer_waiting = true;
        host->unlock(object->guard);
        host->completion_wait(object->completion, 0);
        host->lock(object->guard);
    }
    host->unlock(object->guard);
}

void mmulab_linux_down_write(struct rw_semaphore *sem, const char *file, int line) {
    struct mmulab_linux_object *object = rwsem_object(sem, file, line);
    if (held_by_me(object)) {
        shim_report(object->device, "BUG", "recursive down_write (the thread already holds it)", file, line, "down_write");
    }
    object->device->host->lock(object->lock); /* may sleep: the host checks the context */
    wait_for_readers(object);
    set_owner(object, me(object));
}

int mmulab_linux_down_write_trylock(struct rw_semaphore *sem, const char *file, int line) {
    struct mmulab_linux_object *object = rwsem_object(sem, file, line);
    const mmulab_host *host = object->device->host;
    if (!host->trylock(object->lock)) return 0;
    host->lock(object->guard);
    bool busy = object->readers > 0;
    host->unlock(object->guard);
    if (busy) {
        host->unlock(object->lock);
        return 0;
    }
    set_owner(object, me(object));
    return 1;
}

void mmulab_linux_up_write(struct rw_semaphore *sem, const char *file, int line) {
    struct mmulab_linux_object *object = rwsem_object(sem, file, line);
    if (!held_by_me(object)) {
        shim_report(object->device, "BUG", "up_write of a rw_semaphore the thread does not hold for writing", file, line,
                    "up_write");
        return;
    }
    set_owner(object, 0);
    object->device->host->unlock(object->lock);
}

void mmulab_linux_downgrade_write(struct rw_semaphore *sem, const char *file, int line) {
    struct mmulab_linux_object *object = rwsem_object(sem, file, line);
    if (!held_by_me(object)) {
        shim_report(object->device, "BUG", "downgrade_write of a rw_semaphore the thread does not hold for writing",
                    file, line, "downgrade_write");
        return;
    }
    reader_in(object); /* the writer becomes a reader before it opens the gate */
    set_owner(object, 0);
    object->device->host->unlock(object->lock);
}

bool mmulab_linux_rwsem_is_locked(struct rw_semaphore *sem) {
    struct mmulab_linux_object *object = sem->mmulab_object;
    return object && (__atomic_load_n(&object->owner, __ATOMIC_ACQUIRE) != 0 ||
                      __atomic_load_n(&object->readers, __ATOMIC_ACQUIRE) > 0);
}

bool mmulab_linux_rwsem_is_write_held_by_me(struct rw_semaphore *sem) { return held_by_me(sem->mmulab_object); }

bool mmulab_linux_rwsem_is_read_held(struct rw_semaphore *sem) {
    struct mmulab_linux_object *object = sem->mmulab_object;
    return object && __atomic_load_n(&object->readers, __ATOMIC_ACQUIRE) > 0;
}
