/*
 * mmulab Linux shim: <linux/mutex.h>.
 *
 * struct mutex is a host sleeping lock (MMULAB_LOCK_SLEEPING): taking it
 * may sleep, so mutex_lock where the thread may not sleep (a spin lock
 * held, a non-blockable notifier callback) is a context violation, even
 * when the mutex happens to be free (the bug is the possibility, as
 * lockdep and might_sleep say). mutex_trylock never sleeps and is allowed
 * anywhere. The lab has no signals: mutex_lock_interruptible and
 * mutex_lock_killable take the lock and return 0. Unlocking a mutex the
 * thread does not hold is reported. DEFINE_MUTEX is not provided (see
 * <linux/spinlock.h>).
 */
#ifndef MMULAB_LINUX_MUTEX_H
#define MMULAB_LINUX_MUTEX_H

#include <linux/compiler.h>
#include <linux/types.h>

struct mmulab_linux_object;

struct mutex {
    struct mmulab_linux_object *mmulab_object;
};

void mmulab_linux_mutex_init(struct mutex *lock, const char *name);
void mmulab_linux_mutex_lock(struct mutex *lock, const char *file, int line);
int mmulab_linux_mutex_trylock(struct mutex *lock, const char *file, int line);
void mmulab_linux_mutex_unlock(struct mutex *lock, const char *file, int line);
bool mmulab_linux_mutex_is_locked(struct mutex *lock);
bool mmulab_linux_mutex_is_held_by_me(struct mutex *lock);
void mmulab_linux_mutex_destroy(struct mutex *lock);

#define mutex_init(lock) mmulab_linux_mutex_init((lock), #lock)
#define mutex_lock(lock) mmulab_linux_mutex_lock((lock), MMULAB_LINUX_FILE, __LINE__)
#define mutex_lock_interruptible(lock) (mmulab_linux_mutex_lock((lock), MMULAB_LINUX_FILE, __LINE__), 0)
#define mutex_lock_killable(lock) (mmulab_linux_mutex_lock((lock), MMULAB_LINUX_FILE, __LINE__), 0)
#define mutex_lock_nested(lock, subclass) mutex_lock(lock)
#define mutex_trylock(lock) mmulab_linux_mutex_trylock((lock), MMULAB_LINUX_FILE, __LINE__)
#define mutex_unlock(lock) mmulab_linux_mutex_unlock((lock), MMULAB_LINUX_FILE, __LINE__)
#define mutex_is_locked(lock) mmulab_linux_mutex_is_locked(lock)
#define mutex_destroy(lock) mmulab_linux_mutex_destroy(lock)

#include <linux/lockdep.h>

#endif /* MMULAB_LINUX_MUTEX_H */
