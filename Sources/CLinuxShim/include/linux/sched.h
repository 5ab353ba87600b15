/*
 * mmulab Linux shim: <linux/sched.h>.
 *
 * `current` is the task the calling thread runs for: the glue file enters
 * every call into the driver with the address space it is about (the
 * process that "opened the device"), so current->mm is that address
 * space's mm_struct, as in a driver's open or ioctl. In a notifier
 * callback current->mm is the mm the callback is about. The lab has no
 * signals: signal_pending and fatal_signal_pending are false.
 *
 * might_sleep() reports a context violation through the host when the
 * calling thread may not sleep (a spin lock held, a non-blockable notifier
 * callback), as Linux's does. cond_resched() lets another thread run
 * (host->yield) and may sleep in the same sense.
 */
#ifndef MMULAB_LINUX_SCHED_H
#define MMULAB_LINUX_SCHED_H

#include <linux/compiler.h>
#include <linux/types.h>

struct mm_struct;

struct task_struct {
    struct mm_struct *mm;
    pid_t pid;
    char comm[16];
};

struct task_struct *mmulab_linux_current(void);
#define current (mmulab_linux_current())

void mmulab_linux_might_sleep(const char *file, int line);
#define might_sleep() mmulab_linux_might_sleep(MMULAB_LINUX_FILE, __LINE__)
#define might_sleep_if(condition)                                                                                      \
    do {                                                                                                               \
        if (condition) might_sleep();                                                                                  \
    } while (0)

void mmulab_linux_cond_resched(const char *file, int line);
#define cond_resched() mmulab_linux_cond_resched(MMULAB_LINUX_FILE, __LINE__)

static inline int signal_pending(struct task_struct *task) {
    (void)task;
    return 0;
}
static inline int fatal_signal_pending(struct task_struct *task) {
    (void)task;
    return 0;
}

#endif /* MMULAB_LINUX_SCHED_H */
