/*
 * mmulab Linux shim: <linux/rwsem.h>.
 *
 * A read-write semaphore built on the host: a sleeping gate lock that a
 * writer holds for as long as it writes and a reader takes only to come
 * in, a count of readers, and a host completion a writer waits on for the
 * readers inside to leave. So, as in Linux: down_read and down_write may
 * sleep (a context violation where the thread may not, even uncontended,
 * since both take the gate); a waiting writer holds new readers back (a
 * reader that takes the semaphore twice while a writer waits deadlocks,
 * as in Linux); the trylock forms never sleep. No signals: the killable
 * and interruptible forms return 0.
 */
#ifndef MMULAB_LINUX_RWSEM_H
#define MMULAB_LINUX_RWSEM_H

#include <linux/compiler.h>
#include <linux/types.h>

struct mmulab_linux_object;

struct rw_semaphore {
    struct mmulab_linux_object *mmulab_object;
};

void mmulab_linux_init_rwsem(struct rw_semaphore *sem, const char *name);
void mmulab_linux_down_read(struct rw_semaphore *sem, const char *file, int line);
int mmulab_linux_down_read_trylock(struct rw_semaphore *sem, const char *file, int line);
void mmulab_linux_up_read(struct rw_semaphore *sem, const char *file, int line);
void mmulab_linux_down_write(struct rw_semaphore *sem, const char *file, int line);
int mmulab_linux_down_write_trylock(struct rw_semaphore *sem, const char *file, int line);
void mmulab_linux_up_write(struct rw_semaphore *sem, const char *file, int line);
void mmulab_linux_downgrade_write(struct rw_semaphore *sem, const char *file, int line);
bool mmulab_linux_rwsem_is_locked(struct rw_semaphore *sem);
/* Held for writing by the calling thread; held for reading by anyone. */
bool mmulab_linux_rwsem_is_write_held_by_me(struct rw_semaphore *sem);
bool mmulab_linux_rwsem_is_read_held(struct rw_semaphore *sem);

#define init_rwsem(sem) mmulab_linux_init_rwsem((sem), #sem)
#define down_read(sem) mmulab_linux_down_read((sem), MMULAB_LINUX_FILE, __LINE__)
#define down_read_killable(sem) (mmulab_linux_down_read((sem), MMULAB_LINUX_FILE, __LINE__), 0)
#define down_read_interruptible(sem) (mmulab_linux_down_read((sem), MMULAB_LINUX_FILE, __LINE__), 0)
#define down_read_trylock(sem) mmulab_linux_down_read_trylock((sem), MMULAB_LINUX_FILE, __LINE__)
#define up_read(sem) mmulab_linux_up_read((sem), MMULAB_LINUX_FILE, __LINE__)
#define down_write(sem) mmulab_linux_down_write((sem), MMULAB_LINUX_FILE, __LINE__)
#define down_write_killable(sem) (mmulab_linux_down_write((sem), MMULAB_LINUX_FILE, __LINE__), 0)
#define down_write_trylock(sem) mmulab_linux_down_write_trylock((sem), MMULAB_LINUX_FILE, __LINE__)
#define up_write(sem) mmulab_linux_up_write((sem), MMULAB_LINUX_FILE, __LINE__)
#define downgrade_write(sem) mmulab_linux_downgrade_write((sem), MMULAB_LINUX_FILE, __LINE__)
#define rwsem_is_locked(sem) mmulab_linux_rwsem_is_locked(sem)

#include <linux/lockdep.h>

#endif /* MMULAB_LINUX_RWSEM_H */
