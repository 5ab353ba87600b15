/*
 * mmulab Linux shim: <linux/wait.h>: wait queues on the host.
 *
 * wait_event(wq, condition) sleeps until `condition` is true, re-checking
 * it after every wake_up on `wq`, with no lost wake-up: the waiter
 * registers on the queue before it tests the condition, and wake_up
 * (which must follow the change that makes the condition true, as in
 * Linux) wakes every waiter registered before it. The sleep is a host
 * completion wait, so waiting where the thread may not sleep is a context
 * violation (checked before the first test, as Linux's might_sleep in
 * wait_event does). wake_up and wake_up_all never sleep and wake every
 * waiter (the lab has no exclusive waits). No signals: the interruptible
 * and killable forms behave as the plain ones, with 0 for "woken".
 */
#ifndef MMULAB_LINUX_WAIT_H
#define MMULAB_LINUX_WAIT_H

#include <linux/compiler.h>
#include <linux/sched.h>
#include <linux/types.h>

struct mmulab_linux_object;

typedef struct wait_queue_head {
    struct mmulab_linux_object *mmulab_object;
} wait_queue_head_t;

void mmulab_linux_init_waitqueue_head(wait_queue_head_t *wq, const char *name);
void wake_up(wait_queue_head_t *wq);
/* Registers the caller as a waiter; returns the ticket for the wait. */
unsigned long mmulab_linux_wait_prepare(wait_queue_head_t *wq);
/* Waits for a wake_up after the ticket's registration, for at most
 * `timeout_ns` (0: for ever). False if the time ran out first. */
bool mmulab_linux_wait_sleep(wait_queue_head_t *wq, unsigned long ticket, u64 timeout_ns);
/* The condition came true before any wait: withdraws the registration. */
void mmulab_linux_wait_cancel(wait_queue_head_t *wq, unsigned long ticket);
unsigned long mmulab_linux_jiffies(void);

#define init_waitqueue_head(wq) mmulab_linux_init_waitqueue_head((wq), #wq)
#define wake_up_all(wq) wake_up(wq)
#define wake_up_interruptible(wq) wake_up(wq)
#define wake_up_interruptible_all(wq) wake_up(wq)

#define wait_event(wq, condition)                                                                                      \
    do {                                                                                                               \
        might_sleep();                                                                                                 \
        if (condition) break;                                                                                          \
        for (;;) {                                                                                                     \
            unsigned long __mmulab_ticket = mmulab_linux_wait_prepare(&(wq));                                          \
            if (condition) {                                                                                           \
                mmulab_linux_wait_cancel(&(wq), __mmulab_ticket);                                                      \
                break;                                                                                                 \
            }                                                                                                          \
            mmulab_linux_wait_sleep(&(wq), __mmulab_ticket, 0);                                                        \
        }                                                                                                              \
    } while (0)

/* `timeout` in jiffies. 0 if it passed with the condition false, else the
 * jiffies left (at least 1), as in Linux. */
#define wait_event_timeout(wq, condition, timeout)                                                                     \
    ({                                                                                                                 \
        long __mmulab_left = (long)(timeout);                                                                          \
        might_sleep();                                                                                                 \
        if (!(condition)) {                                                                                            \
            unsigned long __mmulab_deadline = mmulab_linux_jiffies() + (unsigned long)(timeout);                       \
            for (;;) {                                                                                                 \
                unsigned long __mmulab_ticket = mmulab_linux_wait_prepare(&(wq));                                      \
                if (condition) {                                                                                       \
                    mmulab_linux_wait_cancel(&(wq), __mmulab_ticket);                                                  \
                    break;                                                                                             \
                }                                                                                                      \
                long __mmulab_rest = (long)(__mmulab_deadline - mmulab_linux_jiffies());                               \
                if (__mmulab_rest <= 0) {                                                                              \
                    mmulab_linux_wait_cancel(&(wq), __mmulab_ticket);                                                  \
                    break;                                                                                             \
                }                                                                                                      \
                mmulab_linux_wait_sleep(&(wq), __mmulab_ticket, (u64)__mmulab_rest * 1000000u);                        \
            }                                                                                                          \
            __mmulab_left = (long)(__mmulab_deadline - mmulab_linux_jiffies());                                        \
            if (condition) {                                                                                           \
                if (__mmulab_left < 1) __mmulab_left = 1;                                                              \
            } else {                                                                                                   \
                __mmulab_left = 0;                                                                                     \
            }                                                                                                          \
        } else if (__mmulab_left < 1) {                                                                                \
            __mmulab_left = 1;                                                                                         \
        }                                                                                                              \
        __mmulab_left;                                                                                                 \
    })

#define wait_event_interruptible(wq, condition)                                                                        \
    ({                                                                                                                 \
        wait_event(wq, condition);                                                                                     \
        0;                                                                                                             \
    })
#define wait_event_killable(wq, condition) wait_event_interruptible(wq, condition)
#define wait_event_interruptible_timeout(wq, condition, timeout) wait_event_timeout(wq, condition, timeout)

#endif /* MMULAB_LINUX_WAIT_H */
