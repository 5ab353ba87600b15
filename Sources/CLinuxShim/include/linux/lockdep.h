/*
 * mmulab Linux shim: <linux/lockdep.h>: the assertions drivers make about
 * the locks they hold, checked and reported as a WARN with the caller's
 * file and line. lockdep_assert_held on a spinlock_t or mutex means held
 * by the calling thread; on a rw_semaphore, held for writing by the
 * calling thread or for reading by anyone (the shim does not know which
 * threads read). Lock-order checking is the host's, where it has one.
 */
#ifndef MMULAB_LINUX_LOCKDEP_H
#define MMULAB_LINUX_LOCKDEP_H

#include <linux/bug.h>
#include <linux/types.h>

struct mutex;
struct rw_semaphore;
struct spinlock;

bool mmulab_linux_spin_is_held_by_me(struct spinlock *lock);
bool mmulab_linux_mutex_is_held_by_me(struct mutex *lock);
bool mmulab_linux_rwsem_is_write_held_by_me(struct rw_semaphore *sem);
bool mmulab_linux_rwsem_is_read_held(struct rw_semaphore *sem);

#define mmulab_linux_lock_is_held(lock)                                                                                \
    _Generic((lock),                                                                                                   \
        struct spinlock *: mmulab_linux_spin_is_held_by_me,                                                            \
        struct mutex *: mmulab_linux_mutex_is_held_by_me,                                                              \
        struct rw_semaphore *: mmulab_linux_rwsem_is_held_any)(lock)

static inline bool mmulab_linux_rwsem_is_held_any(struct rw_semaphore *sem) {
    return mmulab_linux_rwsem_is_write_held_by_me(sem) || mmulab_linux_rwsem_is_read_held(sem);
}

#define mmulab_linux_lockdep_check(held, what)                                                                         \
    do {                                                                                                               \
        if (unlikely(!(held))) mmulab_linux_report("WARN", what, MMULAB_LINUX_FILE, __LINE__, __func__);               \
    } while (0)

#define lockdep_assert_held(lock) mmulab_linux_lockdep_check(mmulab_linux_lock_is_held(lock), "lockdep_assert_held(" #lock ")")
#define lockdep_assert_held_write(sem)                                                                                 \
    mmulab_linux_lockdep_check(mmulab_linux_rwsem_is_write_held_by_me(sem), "lockdep_assert_held_write(" #sem ")")
#define lockdep_assert_held_read(sem)                                                                                  \
    mmulab_linux_lockdep_check(mmulab_linux_rwsem_is_read_held(sem), "lockdep_assert_held_read(" #sem ")")

#endif /* MMULAB_LINUX_LOCKDEP_H */
