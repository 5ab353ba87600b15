/*
 * mmulab Linux shim: <linux/spinlock.h>.
 *
 * spinlock_t is a host spin lock (host->lock_create(MMULAB_LOCK_SPIN)):
 * while it is held the thread is non-blockable, so a sleep, a mutex or a
 * GFP_KERNEL allocation under it is reported as a context violation, and
 * a controlled scheduler (--schedule) sees every acquisition. There are no
 * interrupts in the lab: the _irq, _irqsave and _bh forms are spin_lock.
 *
 * spin_lock_init must be called (in a function of the driver running for
 * an instance: the lock belongs to that instance) before the lock is
 * used; a lock used uninitialised is reported and then initialised.
 * DEFINE_SPINLOCK (a static lock shared by every instance in the process)
 * is not provided: a lock belongs to one instance, whose host owns it.
 */
#ifndef MMULAB_LINUX_SPINLOCK_H
#define MMULAB_LINUX_SPINLOCK_H

#include <linux/compiler.h>
#include <linux/spinlock_types.h>
#include <linux/types.h>

void mmulab_linux_spin_lock_init(spinlock_t *lock, const char *name);
void mmulab_linux_spin_lock(spinlock_t *lock, const char *file, int line);
int mmulab_linux_spin_trylock(spinlock_t *lock, const char *file, int line);
void mmulab_linux_spin_unlock(spinlock_t *lock, const char *file, int line);
bool mmulab_linux_spin_is_held_by_me(spinlock_t *lock);
bool mmulab_linux_spin_is_locked(spinlock_t *lock);

#define spin_lock_init(lock) mmulab_linux_spin_lock_init((lock), #lock)
#define spin_lock(lock) mmulab_linux_spin_lock((lock), MMULAB_LINUX_FILE, __LINE__)
#define spin_trylock(lock) mmulab_linux_spin_trylock((lock), MMULAB_LINUX_FILE, __LINE__)
#define spin_unlock(lock) mmulab_linux_spin_unlock((lock), MMULAB_LINUX_FILE, __LINE__)
#define spin_lock_irq(lock) spin_lock(lock)
#define spin_unlock_irq(lock) spin_unlock(lock)
#define spin_lock_bh(lock) spin_lock(lock)
#define spin_unlock_bh(lock) spin_unlock(lock)
#define spin_lock_irqsave(lock, flags)                                                                                 \
    do {                                                                                                               \
        (flags) = 0;                                                                                                   \
        spin_lock(lock);                                                                                               \
    } while (0)
#define spin_unlock_irqrestore(lock, flags)                                                                            \
    do {                                                                                                               \
        (void)(flags);                                                                                                 \
        spin_unlock(lock);                                                                                             \
    } while (0)
#define spin_is_locked(lock) mmulab_linux_spin_is_locked(lock)
#define assert_spin_locked(lock) mmulab_linux_lockdep_check(mmulab_linux_spin_is_locked(lock), "assert_spin_locked(" #lock ")")

#include <linux/bug.h>
#include <linux/lockdep.h>

#endif /* MMULAB_LINUX_SPINLOCK_H */
