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
#include <linux/rwsem.h>
#include <linux/sched.h>
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

/* The first of `indices` (sorted) in [first, max] whose bit in `marked`
 * is set (every one, for XA_PRESENT); -1 for none. */
static int reference_find(const unsigned long *indices, int count, unsigned long marked, unsigned long first,
                          unsigned long max, xa_mark_t filter) {
    for (int i = 0; i < count; i++) {
        if (indices[i] < first || indices[i] > max) continue;
        if (filter != XA_PRESENT && !(marked & (1UL << i))) continue;
        return i;
    }
    return -1;
}

/* xa_find and xa_find_after against a linear search: the lowest index at
 * least (after) *index and at most max, with the mark asked for; *index
 * set to it, or left alone when there is none. Indices on both sides of
 * node boundaries (64, 4096, 2^18), far apart, and at the very top. */
static int selftest_xa_find(void) {
    static const unsigned long indices[] = {
        0, 1, 63, 64, 65, 4095, 4096, 4097, 262143, 262144, 1UL << 30, (1UL << 36) + 5, ULONG_MAX - 64, ULONG_MAX - 1,
        ULONG_MAX,
    };
    const int count = (int)ARRAY_SIZE(indices);
    unsigned long marked = 0;
    struct xarray xa;

    xa_init(&xa);
    for (int i = 0; i < count; i++) {
        CHECK(xa_store(&xa, indices[i], xa_mk_value((unsigned long)i), GFP_KERNEL) == NULL);
        if (i % 3 == 1) {
            xa_set_mark(&xa, indices[i], XA_MARK_0);
            marked |= 1UL << i;
        }
    }
    unsigned long starts[3 * ARRAY_SIZE(indices) + 2];
    int nstarts = 0;
    for (int i = 0; i < count; i++) {
        starts[nstarts++] = indices[i];
        starts[nstarts++] = indices[i] - 1;
        starts[nstarts++] = indices[i] + 1;
    }
    starts[nstarts++] = 1UL << 20;
    starts[nstarts++] = 3000;
    for (int s = 0; s < nstarts; s++) {
        unsigned long first = starts[s];
        unsigned long maxes[] = { ULONG_MAX, first, first + 70 < first ? ULONG_MAX : first + 70, 4096 };
        for (unsigned int m = 0; m < ARRAY_SIZE(maxes); m++) {
            for (int f = 0; f < 2; f++) {
                xa_mark_t filter = f ? XA_MARK_0 : XA_PRESENT;
                unsigned long index = first;
                void *entry = xa_find(&xa, &index, maxes[m], filter);
                int want = reference_find(indices, count, marked, first, maxes[m], filter);
                CHECK(want < 0 ? entry == NULL && index == first
                               : entry == xa_mk_value((unsigned long)want) && index == indices[want]);
                index = first;
                entry = xa_find_after(&xa, &index, maxes[m], filter);
                want = first == ULONG_MAX ? -1 : reference_find(indices, count, marked, first + 1, maxes[m], filter);
                CHECK(want < 0 ? entry == NULL && index == first
                               : entry == xa_mk_value((unsigned long)want) && index == indices[want]);
            }
        }
    }
    /* A first index above max finds nothing; nor does an empty array. */
    unsigned long index = 100;
    CHECK(xa_find(&xa, &index, 99, XA_PRESENT) == NULL && index == 100);
    xa_destroy(&xa);
    index = 0;
    CHECK(xa_find(&xa, &index, ULONG_MAX, XA_PRESENT) == NULL && xa_find_after(&xa, &index, ULONG_MAX, XA_PRESENT) == NULL);
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

/* The header helpers nothing else here calls: atomics, list moves, kref
 * reads, rounding, time comparisons and conversions, the allocation
 * variants, ktime arithmetic, the xarray's lock forms. */
static int selftest_helpers(void) {
    atomic_t a = ATOMIC_INIT(5);
    atomic_add(3, &a);
    atomic_sub(1, &a);
    CHECK(atomic_read(&a) == 7 && atomic_add_return(3, &a) == 10 && atomic_sub_return(10, &a) == 0);
    CHECK(atomic_xchg(&a, 4) == 0 && atomic_read(&a) == 4);
    CHECK(!atomic_add_unless(&a, 1, 4) && atomic_add_unless(&a, 1, 3) && atomic_read(&a) == 5);
    atomic_set(&a, 1);
    CHECK(atomic_dec_and_test(&a) && !atomic_inc_not_zero(&a) && atomic_read(&a) == 0);
    atomic_long_t l = ATOMIC_LONG_INIT(1L << 40);
    atomic_long_inc(&l);
    CHECK(atomic_long_read(&l) == (1L << 40) + 1);
    atomic64_t q = ATOMIC64_INIT(-1);
    CHECK(atomic64_inc_return(&q) == 0 && atomic64_cmpxchg(&q, 0, 9) == 0 && atomic64_read(&q) == 9);

    /* list_add puts at the front, list_add_tail at the back, list_move_tail moves. */
    LIST_HEAD(list);
    struct counted x = { .value = 1 }, y = { .value = 2 }, z = { .value = 3 };
    struct counted *pos;
    struct list_head *raw;
    int sum = 0, n = 0;
    CHECK(list_first_entry_or_null(&list, struct counted, link) == NULL);
    list_add_tail(&x.link, &list);
    list_add(&y.link, &list);      /* y x */
    list_add_tail(&z.link, &list); /* y x z */
    list_move_tail(&y.link, &list); /* x z y */
    list_for_each_entry(pos, &list, link) sum = sum * 10 + pos->value;
    CHECK(sum == 132);
    CHECK(list_first_entry_or_null(&list, struct counted, link) == &x && list_next_entry(&x, link) == &z);
    list_for_each(raw, &list) n++;
    CHECK(n == 3 && list_entry(list.prev, struct counted, link) == &y);
    list_del_init(&z.link);
    CHECK(list_empty(&z.link) && list_next_entry(&x, link) == &y);

    struct kref kref;
    kref_init(&kref);
    CHECK(kref_read(&kref) == 1 && kref_get_unless_zero(&kref) && kref_read(&kref) == 2);
    struct kref dead = KREF_INIT(0);
    CHECK(!kref_get_unless_zero(&dead) && kref_read(&dead) == 0);

    CHECK(round_up(4097UL, 4096UL) == 8192 && round_down(8191UL, 4096UL) == 4096 && round_up(4096UL, 4096UL) == 4096);
    CHECK(clamp(5, 1, 3) == 3 && clamp(-2, 1, 3) == 1 && clamp(2, 1, 3) == 2);
    CHECK(min_t(int, -1, 2U) == -1 && max_t(unsigned int, -1, 2U) == UINT_MAX);
    CHECK(DIV_ROUND_UP(4097, 4096) == 2 && PAGE_ALIGN(1) == PAGE_SIZE && offset_in_page(4097) == 1);

    /* Wrap-safe time comparisons and conversions at HZ = 1000. */
    CHECK(time_before_eq(ULONG_MAX - 5, 5UL) && time_before_eq(7UL, 7UL) && !time_before_eq(5UL, ULONG_MAX - 5));
    unsigned long now = jiffies;
    CHECK(time_is_before_jiffies(now - 10) && time_is_after_jiffies(now + 1000) && !time_is_after_jiffies(now - 10));
    CHECK(nsecs_to_jiffies(5000000ULL) == 5 && nsecs_to_jiffies(999999ULL) == 0 && jiffies_to_usecs(3) == 3000);

    /* The allocation variants: zeroed where they say so, NULL on overflow. */
    unsigned int *c = kcalloc(8, sizeof(*c), GFP_KERNEL);
    CHECK(c && c[7] == 0);
    kfree(c);
    CHECK(kcalloc(ULONG_MAX / 2, 4, GFP_KERNEL) == NULL && kvmalloc_array(ULONG_MAX / 2, 4, GFP_KERNEL) == NULL);
    CHECK(vmalloc_array(ULONG_MAX / 2, 4) == NULL);
    char *big = kvmalloc(5 * PAGE_SIZE, GFP_KERNEL);
    CHECK(big != NULL);
    big[5 * PAGE_SIZE - 1] = 1;
    kvfree(big);
    big = kvzalloc(5 * PAGE_SIZE, GFP_KERNEL);
    CHECK(big && big[5 * PAGE_SIZE - 1] == 0);
    kvfree(big);
    unsigned long *arr = kvmalloc_array(4, sizeof(*arr), GFP_KERNEL);
    CHECK(arr != NULL);
    kvfree(arr);
    arr = vmalloc_array(4, sizeof(*arr));
    CHECK(arr != NULL);
    vfree(arr);

    ktime_t t = 1500000;
    CHECK(ktime_to_ns(t) == 1500000 && ktime_to_us(t) == 1500 && ktime_add_ns(t, 500) == 1500500);

    /* An xarray with its lock taken in each form, and xa_init_flags. */
    struct xarray xa;
    unsigned long flags;
    int dummy __aligned(8);
    xa_init_flags(&xa, XA_FLAGS_LOCK_IRQ);
    xa_lock_irq(&xa);
    CHECK(__xa_store(&xa, 3, &dummy, GFP_ATOMIC) == NULL);
    xa_unlock_irq(&xa);
    xa_lock_bh(&xa);
    CHECK(__xa_erase(&xa, 3) == &dummy);
    xa_unlock_bh(&xa);
    xa_lock_irqsave(&xa, flags);
    CHECK(__xa_store(&xa, 4, xa_mk_value(4), GFP_ATOMIC) == NULL);
    xa_unlock_irqrestore(&xa, flags);
    CHECK(xa_to_value(xa_load(&xa, 4)) == 4 && xa_to_internal(xa_mk_internal(9)) == 9);
    xa_destroy(&xa);
    return 0;
}

/* The lock, wait and mmap-lock forms that take or wait without blocking
 * here: the interruptible and killable forms answer 0 (no signals) and
 * hold what they took, the irq and bh forms are the plain lock, the
 * assertions are quiet when the lock is held as they ask (the test checks
 * no report was made; LinuxShimSyncTests checks they speak when it is not). */
static int selftest_sync_forms(void) {
    struct mutex mutex;
    spinlock_t lock;
    struct rw_semaphore sem;
    struct completion done;
    wait_queue_head_t wq;
    struct mm_struct *mm = current->mm;

    mutex_init(&mutex);
    CHECK(mutex_lock_interruptible(&mutex) == 0 && mutex_is_locked(&mutex));
    mutex_unlock(&mutex);
    CHECK(mutex_lock_killable(&mutex) == 0 && mutex_is_locked(&mutex));
    mutex_unlock(&mutex);
    mutex_lock_nested(&mutex, 1);
    CHECK(mutex_is_locked(&mutex));
    mutex_unlock(&mutex);
    CHECK(!mutex_is_locked(&mutex));
    mutex_destroy(&mutex);

    spin_lock_init(&lock);
    spin_lock_irq(&lock);
    CHECK(spin_is_locked(&lock));
    assert_spin_locked(&lock);
    spin_unlock_irq(&lock);
    spin_lock_bh(&lock);
    CHECK(spin_trylock(&lock) == 0);
    spin_unlock_bh(&lock);
    CHECK(!spin_is_locked(&lock));

    init_rwsem(&sem);
    CHECK(!rwsem_is_locked(&sem));
    CHECK(down_read_killable(&sem) == 0 && down_read_interruptible(&sem) == 0 && rwsem_is_locked(&sem));
    lockdep_assert_held_read(&sem);
    CHECK(down_write_trylock(&sem) == 0);
    up_read(&sem);
    up_read(&sem);
    CHECK(down_write_killable(&sem) == 0 && rwsem_is_locked(&sem));
    lockdep_assert_held_write(&sem);
    up_write(&sem);
    CHECK(!rwsem_is_locked(&sem));

    init_completion(&done);
    complete(&done);
    CHECK(wait_for_completion_interruptible(&done) == 0);
    complete(&done);
    CHECK(wait_for_completion_killable(&done) == 0);
    CHECK(wait_for_completion_timeout(&done, 1) == 0);

    init_waitqueue_head(&wq);
    CHECK(wait_event_interruptible(wq, true) == 0 && wait_event_killable(wq, true) == 0);
    CHECK(wait_event_interruptible_timeout(wq, false, msecs_to_jiffies(2)) == 0);
    CHECK(wait_event_interruptible_timeout(wq, true, 10) >= 1);
    wake_up_all(&wq); /* no waiter: nothing to do, nothing reported */
    wake_up_interruptible(&wq);
    wake_up_interruptible_all(&wq);

    CHECK(!signal_pending(current) && !fatal_signal_pending(current));
    CHECK(gfpflags_allow_blocking(GFP_KERNEL) && !gfpflags_allow_blocking(GFP_ATOMIC) && !gfpflags_allow_blocking(GFP_NOWAIT));
    might_sleep_if(false);

    /* current->mm's mmap lock in its other forms. */
    CHECK(mm != NULL);
    CHECK(mmap_read_trylock(mm) == 1);
    mmap_assert_locked(mm);
    mmap_read_unlock(mm);
    CHECK(mmap_read_lock_killable(mm) == 0);
    mmap_read_unlock(mm);
    CHECK(mmap_write_lock_killable(mm) == 0);
    mmap_assert_write_locked(mm);
    mmap_write_downgrade(mm);
    CHECK(mmap_read_trylock(mm) == 1); /* downgraded: another reader comes in */
    mmap_read_unlock(mm);
    mmap_read_unlock(mm);
    CHECK(!rwsem_is_locked(&mm->mmap_lock));

    /* xa_for_each_start: from an index on. */
    struct xarray xa;
    unsigned long index, seen = 0;
    void *entry;
    xa_init(&xa);
    for (unsigned long i = 1; i <= 5; i++) xa_store(&xa, i * 10, xa_mk_value(i), GFP_KERNEL);
    xa_for_each_start(&xa, index, entry, 25) seen = seen * 10 + xa_to_value(entry);
    CHECK(seen == 345);
    xa_destroy(&xa);
    return 0;
}

long probe_selftest(char *message, size_t size) {
    checks = 0;
    failure = message;
    failure_size = size;
    int ret = selftest_xarray();
    if (!ret) ret = selftest_xa_find();
    if (!ret) ret = selftest_library();
    if (!ret) ret = selftest_helpers();
    if (!ret) ret = selftest_sync_forms();
    return ret ? ret : checks;
}
