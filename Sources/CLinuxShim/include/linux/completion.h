/*
 * mmulab Linux shim: <linux/completion.h>: struct completion is a host
 * completion. Waiting may sleep (a context violation where the thread may
 * not); complete and complete_all never sleep. No signals: the
 * interruptible and killable waits return 0. Not provided (missing at link
 * time): try_wait_for_completion and completion_done, which the host's
 * completion cannot answer without waiting; DECLARE_COMPLETION_ONSTACK
 * (compile error): use init_completion on the stack object.
 */
#ifndef MMULAB_LINUX_COMPLETION_H
#define MMULAB_LINUX_COMPLETION_H

#include <linux/compiler.h>
#include <linux/types.h>

struct mmulab_linux_object;

struct completion {
    struct mmulab_linux_object *mmulab_object;
};

void mmulab_linux_init_completion(struct completion *x, const char *name);
void reinit_completion(struct completion *x);
void complete(struct completion *x);
void complete_all(struct completion *x);
void mmulab_linux_wait_for_completion(struct completion *x, const char *file, int line);
/* `timeout` in jiffies: 0 if it passed, else the jiffies left (at least 1). */
unsigned long mmulab_linux_wait_for_completion_timeout(struct completion *x, unsigned long timeout, const char *file,
                                                       int line);

#define init_completion(x) mmulab_linux_init_completion((x), #x)
#define wait_for_completion(x) mmulab_linux_wait_for_completion((x), MMULAB_LINUX_FILE, __LINE__)
#define wait_for_completion_interruptible(x) (mmulab_linux_wait_for_completion((x), MMULAB_LINUX_FILE, __LINE__), 0)
#define wait_for_completion_killable(x) (mmulab_linux_wait_for_completion((x), MMULAB_LINUX_FILE, __LINE__), 0)
#define wait_for_completion_timeout(x, timeout)                                                                        \
    mmulab_linux_wait_for_completion_timeout((x), (timeout), MMULAB_LINUX_FILE, __LINE__)

bool try_wait_for_completion(struct completion *x); /* not provided: link error */
bool completion_done(struct completion *x);         /* not provided: link error */

#endif /* MMULAB_LINUX_COMPLETION_H */
