/*
 * mmulab Linux shim: <linux/mmap_lock.h>: mmap_read_lock and friends on
 * the mm's shim rw_semaphore (see <linux/mm_types.h> for what it does and
 * does not exclude).
 */
#ifndef MMULAB_LINUX_MMAP_LOCK_H
#define MMULAB_LINUX_MMAP_LOCK_H

#include <linux/bug.h>
#include <linux/lockdep.h>
#include <linux/mm_types.h>
#include <linux/rwsem.h>

#define mmap_read_lock(mm) down_read(&(mm)->mmap_lock)
#define mmap_read_lock_killable(mm) down_read_killable(&(mm)->mmap_lock)
#define mmap_read_trylock(mm) down_read_trylock(&(mm)->mmap_lock)
#define mmap_read_unlock(mm) up_read(&(mm)->mmap_lock)
#define mmap_write_lock(mm) down_write(&(mm)->mmap_lock)
#define mmap_write_lock_killable(mm) down_write_killable(&(mm)->mmap_lock)
#define mmap_write_unlock(mm) up_write(&(mm)->mmap_lock)
#define mmap_write_downgrade(mm) downgrade_write(&(mm)->mmap_lock)
#define mmap_assert_locked(mm)                                                                                         \
    mmulab_linux_lockdep_check(mmulab_linux_rwsem_is_write_held_by_me(&(mm)->mmap_lock) ||                            \
                                   mmulab_linux_rwsem_is_read_held(&(mm)->mmap_lock),                                  \
                               "mmap_assert_locked(" #mm ")")
#define mmap_assert_write_locked(mm)                                                                                   \
    mmulab_linux_lockdep_check(mmulab_linux_rwsem_is_write_held_by_me(&(mm)->mmap_lock), "mmap_assert_write_locked(" #mm ")")

#endif /* MMULAB_LINUX_MMAP_LOCK_H */
