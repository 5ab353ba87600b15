/*
 * mmulab Linux shim: struct completion and wait queues on host
 * completions (<linux/completion.h>, <linux/wait.h>).
 *
 * A wait queue is a spin lock guarding a count of registered waiters and a
 * generation, and a host completion that holds one token per waiter woken.
 * wait_prepare registers under the guard and returns the generation;
 * wake_up takes every registered waiter (waiters = 0, generation + 1) and
 * puts that many tokens in. A waiter that was registered when wake_up ran
 * finds a token; one registered after the condition changed sees the
 * condition (it tests it after registering). A waiter that stops waiting
 * (condition true, or time up) withdraws its registration if no wake_up
 * counted it; if one did, its token stays for someone else: a spurious
 * wake-up, after which wait_event tests the condition again.
 */
#include "internal.h"

#include <linux/completion.h>
#include <linux/jiffies.h>
#include <linux/wait.h>

static struct mmulab_linux_object *completion_object(struct completion *x) {
    struct mmulab_linux_object *object = x->mmulab_object;
    if (!object) {
        shim_report(shim_require_device("a completion"), "BUG", "completion used before init_completion", "completion",
                    0, "complete/wait_for_completion");
        object = x->mmulab_object = shim_object_make(x, SHIM_COMPLETION, "uninitialised completion");
    }
    return object;
}

void mmulab_linux_init_completion(struct completion *x, const char *name) {
    x->mmulab_object = shim_object_make(x, SHIM_COMPLETION, name);
}

void reinit_completion(struct completion *x) {
    struct mmulab_linux_object *object = completion_object(x);
    object->device->host->completion_reinit(object->completion);
}

void complete(struct completion *x) {
    struct mmulab_linux_object *object = completion_object(x);
    object->device->host->completion_complete(object->completion);
}

void complete_all(struct completion *x) {
    struct mmulab_linux_object *object = completion_object(x);
    object->device->host->completion_complete_all(object->completion);
}

void mmulab_linux_wait_for_completion(struct completion *x, const char *file, int line) {
    (void)file, (void)line;
    struct mmulab_linux_object *object = completion_object(x);
    /* The host's completion wait checks the context itself. */
    object->device->host->completion_wait(object->completion, 0);
}

unsigned long mmulab_linux_wait_for_completion_timeout(struct completion *x, unsigned long timeout, const char *file,
                                                       int line) {
    struct mmulab_linux_object *object = completion_object(x);
    const mmulab_host *host = object->device->host;
    (void)file, (void)line;
    unsigned long start = mmulab_linux_jiffies();
    /* The host's 0 means "for ever"; Linux's 0 means "do not wait". */
    u64 nanoseconds = timeout == 0 ? 1 : (u64)timeout * (1000000000ull / HZ);
    if (!host->completion_wait(object->completion, nanoseconds)) return 0;
    unsigned long spent = mmulab_linux_jiffies() - start;
    return spent >= timeout ? 1 : timeout - spent;
}

/* ---------------------------------------------------------------------- */
/* Wait queues                                                             */
/* ---------------------------------------------------------------------- */

void mmulab_linux_init_waitqueue_head(wait_queue_head_t *wq, const char *name) {
    wq->mmulab_object = shim_object_make(wq, SHIM_WAITQ, name);
}

static struct mmulab_linux_object *queue_object(wait_queue_head_t *wq) {
    struct mmulab_linux_object *object = wq->mmulab_object;
    if (!object) {
        shim_report(shim_require_device("a wait queue"), "BUG", "wait queue used before init_waitqueue_head",
                    "wait queue", 0, "wait_event/wake_up");
        object = wq->mmulab_object = shim_object_make(wq, SHIM_WAITQ, "uninitialised wait queue");
    }
    return object;
}

unsigned long mmulab_linux_wait_prepare(wait_queue_head_t *wq) {
    struct mmulab_linux_object *object = queue_object(wq);
    const mmulab_host *host = object->device->host;
    host->lock(object->guard);
    object->waiters++;
    unsigned long ticket = object->generation;
    host->unlock(object->guard);
    return ticket;
}

void mmulab_linux_wait_cancel(wait_queue_head_t *wq, unsigned long ticket) {
    struct mmulab_linux_object *object = queue_object(wq);
    const mmulab_host *host = object->device->host;
    host->lock(object->guard);
    /* Still counted (no wake_up since): withdraw. */
    if (object->generation == ticket && object->waiters > 0) object->waiters--;
    host->unlock(object->guard);
}

bool mmulab_linux_wait_sleep(wait_queue_head_t *wq, unsigned long ticket, u64 timeout_ns) {
    struct mmulab_linux_object *object = queue_object(wq);
    bool woken = object->device->host->completion_wait(object->completion, timeout_ns);
    if (!woken) mmulab_linux_wait_cancel(wq, ticket);
    return woken;
}

void wake_up(wait_queue_head_t *wq) {
    struct mmulab_linux_object *object = queue_object(wq);
    const mmulab_host *host = object->device->host;
    host->lock(object->guard);
    unsigned long woken = object->waiters;
    object->waiters = 0;
    object->generation++;
    host->unlock(object->guard);
    for (unsigned long i = 0; i < woken; i++) host->completion_complete(object->completion);
}
