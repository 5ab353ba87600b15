/*
 * The Linux shim probe's runtime: delays and sleeps timed with
 * ktime_get_ns, printk at each level, and the mm reference counts
 * (mmget/mmput, mmgrab/mmdrop) on current->mm.
 */
#include <linux/atomic.h>
#include <linux/delay.h>
#include <linux/errno.h>
#include <linux/ktime.h>
#include <linux/printk.h>
#include <linux/sched.h>
#include <linux/sched/mm.h>

#include "probe.h"
#include "probe_state.h"

long probe_delay(struct probe *probe, struct probe_command *c) {
    u64 *a = c->arguments;
    u64 start = ktime_get_ns();

    (void)probe;
    switch (a[0]) {
    case PROBE_NDELAY: ndelay(a[1]); break;
    case PROBE_UDELAY: udelay(a[1]); break;
    case PROBE_MDELAY: mdelay(a[1]); break;
    case PROBE_FSLEEP: fsleep(a[1]); break;
    case PROBE_MSLEEP_INTERRUPTIBLE: a[1] = msleep_interruptible((unsigned int)a[1]); break;
    case PROBE_KTIME_GET_NS:
        a[1] = (u64)ktime_get();
        return (long)start;
    default: return -EINVAL;
    }
    return (long)(ktime_get_ns() - start);
}

long probe_printk(struct probe *probe, struct probe_command *c) {
    static const char *const levels[] = { KERN_EMERG, KERN_ALERT, KERN_CRIT, KERN_ERR,
                                          KERN_WARNING, KERN_NOTICE, KERN_INFO, KERN_DEBUG };
    u64 level = c->arguments[0];

    (void)probe;
    if (level < 8) return printk("%sprobe printk %d\n", levels[level], (int)level);
    return printk("probe printk %d\n", (int)level);
}

long probe_mm_refs(struct probe *probe, struct probe_command *c) {
    struct mm_struct *mm = current->mm;

    (void)probe;
    if (!mm) return -EINVAL;
    switch (c->arguments[0]) {
    case PROBE_MM_READ: break;
    case PROBE_MM_GET: mmget(mm); break;
    case PROBE_MM_PUT: mmput(mm); break;
    case PROBE_MM_GRAB: mmgrab(mm); break;
    case PROBE_MM_DROP: mmdrop(mm); break;
    default: return -EINVAL;
    }
    c->arguments[0] = (u64)atomic_read(&mm->mm_count);
    return atomic_read(&mm->mm_users);
}
