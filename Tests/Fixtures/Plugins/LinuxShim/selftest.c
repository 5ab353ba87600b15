/*
 * The Linux shim probe's self-checks of the pure functions: the xarray,
 * jiffies and delays, err.h, the kmalloc family (and that a lock inside
 * kmalloc'd memory lives and dies with it), list, kref, atomics, strscpy,
 * lock trylocks and ownership, completions and wait queues that need not
 * wait. Each CHECK counts; the first that fails is named in the message.
 */
#include <stdio.h>

#include <linux/atomic.h>
#include <linux/completion.h>
#include <linux/delay.h>
#include <linux/err.h>
#include <linux/jiffies.h>
#include <linux/kref.h>
#include <linux/ktime.h>
#include <linux/list.h>
#include <linux/mm.h>
#include <linux/mutex.h>
#include <linux/slab.h>
#include <linux/spinlock.h>
#include <linux/string.h>
#include <linux/vmalloc.h>
#include <linux/wait.h>
#include <linux/xarray.h>

#include "probe.h"

static _Thread_local int checks;
static _Thread_local char *failure;
static _Thread_local size_t failure_size;

#define CHECK(condition)                                                                                               \
    do {                                                                                                               \
        checks++;                                                                                                      \
        if (!(condition)) {                                                                                            \
            snprintf(failure, failure_size, "selftest.c:%d: %s", __LINE__, #condition);                               \
            return -EINVAL;                                                                                            \
        }                                                                                                              \
    } while (0)

static int selftest_xarray(void) {
    struct xarray xa;
    unsigned long index, seen;
    void *entry;
    int dummy[4] __aligned(8);

    xa_init(&xa);
    CHECK(xa_empty(&xa));
    CHECK(xa_load(&xa, 5) == NULL);
    CHECK(xa_store(&xa, 5, &dummy[0], GFP_KERNEL) == NULL);
    CHECK(xa_load(&xa, 5) == &dummy[0]);
    CHECK(xa_store(&xa, 5, &dummy[1], GFP_KERNEL) == &dummy[0]); /* returns the old entry */
    /* Indices far apart: the tree grows upwards, keeps what it had. */
    CHECK(xa_store(&xa, 1UL << 40, xa_mk_value(7), GFP_KERNEL) == NULL);
    CHECK(xa_store(&xa, ULONG_MAX, &dummy[2], GFP_ATOMIC) == NULL);
    CHECK(xa_load(&xa, 5) == &dummy[1]);
    CHECK(xa_is_value(xa_load(&xa, 1UL << 40)) && xa_to_value(xa_load(&xa, 1UL << 40)) == 7);
    CHECK(xa_load(&xa, ULONG_MAX) == &dummy[2]);
    CHECK(xa_load(&xa, 6) == NULL && xa_load(&xa, (1UL << 40) + 1) == NULL);
    /* In index order, with erasing as it goes. */
    seen = 0;
    xa_for_each(&xa, index, entry) {
        CHECK(seen == 0 ? index == 5 : seen == 1 ? index == (1UL << 40) : index == ULONG_MAX);
        seen++;
    }
    CHECK(seen == 3);
    seen = 0;
    xa_for_each_range(&xa, index, entry, 6, ULONG_MAX - 1) seen++;
    CHECK(seen == 1);
    xa_for_each_range(&xa, index, entry, 0, ULONG_MAX) xa_erase(&xa, index);
    CHECK(xa_empty(&xa));
    /* Tagged pointers. */
    entry = xa_tag_pointer(&dummy[0], 3);
    CHECK(xa_pointer_tag(entry) == 3 && xa_untag_pointer(entry) == &dummy[0]);
    CHECK(xa_store(&xa, 9, entry, GFP_KERNEL) == NULL && xa_pointer_tag(xa_load(&xa, 9)) == 3);
    /* Internal entries are refused; errors are errors. */
    CHECK(xa_is_err(xa_store(&xa, 10, xa_mk_internal(1), GFP_KERNEL)));
    CHECK(xa_err(xa_mk_err(-ENOMEM)) == -ENOMEM && !xa_is_err(&dummy[0]) && xa_err(&dummy[0]) == 0);
    /* insert and cmpxchg. */
    CHECK(xa_insert(&xa, 9, &dummy[1], GFP_KERNEL) == -EBUSY);
    CHECK(xa_insert(&xa, 11, &dummy[1], GFP_KERNEL) == 0 && xa_load(&xa, 11) == &dummy[1]);
    CHECK(xa_cmpxchg(&xa, 11, &dummy[0], &dummy[2], GFP_KERNEL) == &dummy[1] && xa_load(&xa, 11) == &dummy[1]);
    CHECK(xa_cmpxchg(&xa, 11, &dummy[1], &dummy[2], GFP_KERNEL) == &dummy[1] && xa_load(&xa, 11) == &dummy[2]);
    /* Marks: set, found, cleared with the entry. */
    xa_set_mark(&xa, 11, XA_MARK_1);
    CHECK(xa_get_mark(&xa, 11, XA_MARK_1) && !xa_get_mark(&xa, 11, XA_MARK_0) && !xa_get_mark(&xa, 9, XA_MARK_1));
    seen = 0;
    xa_for_each_marked(&xa, index, entry, XA_MARK_1) {
        CHECK(index == 11);
        seen++;
    }
    CHECK(seen == 1);
    xa_clear_mark(&xa, 11, XA_MARK_1);
    CHECK(!xa_get_mark(&xa, 11, XA_MARK_1));
    xa_set_mark(&xa, 11, XA_MARK_2);
    xa_erase(&xa, 11);
    xa_store(&xa, 11, &dummy[3], GFP_KERNEL);
    CHECK(!xa_get_mark(&xa, 11, XA_MARK_2));
    /* __xa_ forms under xa_lock; xa_destroy frees every node. */
    xa_lock(&xa);
    CHECK(__xa_store(&xa, 12, &dummy[0], GFP_ATOMIC) == NULL && __xa_erase(&xa, 12) == &dummy[0]);
    xa_unlock(&xa);
    for (unsigned long i = 0; i < 300; i++) xa_store(&xa, i * 977, xa_mk_value(i), GFP_KERNEL);
    CHECK(xa_to_value(xa_load(&xa, 299 * 977)) == 299);
    xa_destroy(&xa);
    CHECK(xa_empty(&xa) && xa_load(&xa, 977) == NULL);
    return 0;
}

struct counted {
    struct kref kref;
    struct list_head link;
    int value;
};

static int released;
static void counted_release(struct kref *kref) {
    (void)kref;
    released++;
}

static int selftest_library(void) {
    /* jiffies wrap safely; conversions at HZ = 1000. */
    CHECK(time_after(5UL, ULONG_MAX - 5) && !time_before(5UL, ULONG_MAX - 5) && time_after_eq(7UL, 7UL));
    CHECK(msecs_to_jiffies(250) == 250 && jiffies_to_msecs(HZ) == 1000 && usecs_to_jiffies(1) == 1);
    unsigned long before = jiffies;
    msleep(3);
    CHECK(time_after_eq(jiffies, before + 3));
    ktime_t t0 = ktime_get();
    udelay(50);
    CHECK(ktime_sub(ktime_get(), t0) >= 50000);
    t0 = ktime_get();
    usleep_range(2000, 3000);
    CHECK(ktime_ms_delta(ktime_get(), t0) >= 2);
    /* err.h */
    CHECK(IS_ERR(ERR_PTR(-ENOMEM)) && PTR_ERR(ERR_PTR(-ENOMEM)) == -ENOMEM && !IS_ERR(&before) && IS_ERR_OR_NULL(NULL));
    /* kmalloc family. */
    unsigned char *p = kzalloc(64, GFP_KERNEL);
    CHECK(p && p[0] == 0 && p[63] == 0);
    memset(p, 0xab, 64);
    p = krealloc(p, 8192, GFP_KERNEL);
    CHECK(p && p[0] == 0xab && p[63] == 0xab);
    kfree(p);
    unsigned long *array = kvcalloc(100, sizeof(*array), GFP_KERNEL);
    CHECK(array && array[99] == 0);
    kvfree(array);
    CHECK(kmalloc_array(ULONG_MAX / 2, 4, GFP_KERNEL) == NULL); /* overflow: NULL, never short */
    kfree(NULL);
    void *v = vzalloc(3 * PAGE_SIZE);
    CHECK(v && ((char *)v)[3 * PAGE_SIZE - 1] == 0);
    vfree(v);
    char *copy = kmemdup("shim", 5, GFP_KERNEL);
    CHECK(copy && strcmp(copy, "shim") == 0);
    kfree(copy);
    /* A lock inside kmalloc'd memory goes with kfree; krealloc keeps it. */
    struct mutex *m = kmalloc(sizeof(*m), GFP_KERNEL);
    mutex_init(m);
    m = krealloc(m, 2 * sizeof(*m), GFP_KERNEL);
    mutex_lock(m);
    CHECK(mutex_is_locked(m));
    mutex_unlock(m);
    kfree(m);
    /* list, kref, atomic. */
    LIST_HEAD(list);
    struct counted a = { .value = 1 }, b = { .value = 2 }, *pos, *next;
    kref_init(&a.kref);
    list_add_tail(&a.link, &list);
    list_add_tail(&b.link, &list);
    int sum = 0;
    list_for_each_entry(pos, &list, link) sum = sum * 10 + pos->value;
    CHECK(sum == 12);
    list_for_each_entry_safe(pos, next, &list, link) list_del(&pos->link);
    CHECK(list_empty(&list));
    kref_get(&a.kref);
    CHECK(kref_put(&a.kref, counted_release) == 0 && kref_put(&a.kref, counted_release) == 1 && released == 1);
    released = 0;
    atomic_t counter = ATOMIC_INIT(1);
    CHECK(atomic_inc_return(&counter) == 2 && atomic_dec_and_test(&counter) == false && atomic_cmpxchg(&counter, 1, 5) == 1);
    CHECK(atomic_read(&counter) == 5 && atomic_inc_not_zero(&counter) && atomic_read(&counter) == 6);
    char small[4];
    CHECK(strscpy(small, "abcdef", sizeof(small)) == -E2BIG && strcmp(small, "abc") == 0);
    /* Locks: trylock answers, ownership. */
    struct mutex mutex;
    spinlock_t lock;
    mutex_init(&mutex);
    spin_lock_init(&lock);
    CHECK(mutex_trylock(&mutex) == 1 && mutex_trylock(&mutex) == 0 && mutex_is_locked(&mutex));
    lockdep_assert_held(&mutex);
    mutex_unlock(&mutex);
    CHECK(!mutex_is_locked(&mutex));
    unsigned long flags;
    spin_lock_irqsave(&lock, flags);
    CHECK(spin_is_locked(&lock) && spin_trylock(&lock) == 0);
    spin_unlock_irqrestore(&lock, flags);
    CHECK(spin_trylock(&lock) == 1);
    spin_unlock(&lock);
    mutex_destroy(&mutex);
    /* A completion already completed does not wait; a timed wait times out. */
    struct completion done;
    init_completion(&done);
    complete(&done);
    wait_for_completion(&done);
    CHECK(wait_for_completion_timeout(&done, msecs_to_jiffies(2)) == 0);
    complete_all(&done);
    CHECK(wait_for_completion_timeout(&done, 100) >= 1);
    reinit_completion(&done);
    CHECK(wait_for_completion_timeout(&done, 1) == 0);
    /* A wait queue whose condition holds does not wait. */
    wait_queue_head_t wq;
    init_waitqueue_head(&wq);
    wait_event(wq, true);
    CHECK(wait_event_timeout(wq, false, msecs_to_jiffies(2)) == 0);
    CHECK(wait_event_timeout(wq, true, 10) >= 1);
    return 0;
}

long probe_selftest(char *message, size_t size) {
    checks = 0;
    failure = message;
    failure_size = size;
    int ret = selftest_xarray();
    if (!ret) ret = selftest_library();
    return ret ? ret : checks;
}
