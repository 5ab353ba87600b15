/*
 * mmulab Linux shim: <linux/delay.h>. msleep and usleep_range sleep on
 * the host (host->sleep_ns: a context violation where the thread may not
 * sleep; virtual time under --schedule). udelay, ndelay and mdelay busy-
 * wait without sleeping, yielding to the host's scheduler while they
 * spin, so they are allowed anywhere.
 */
#ifndef MMULAB_LINUX_DELAY_H
#define MMULAB_LINUX_DELAY_H

#include <linux/types.h>

void msleep(unsigned int msecs);
void usleep_range(unsigned long min_us, unsigned long max_us);
void ndelay(unsigned long nsecs);
static inline void udelay(unsigned long usecs) { ndelay(usecs * 1000); }
static inline void mdelay(unsigned long msecs) { ndelay(msecs * 1000000); }
static inline void fsleep(unsigned long usecs) { usleep_range(usecs, usecs); }
static inline unsigned long msleep_interruptible(unsigned int msecs) {
    msleep(msecs);
    return 0;
}

#endif /* MMULAB_LINUX_DELAY_H */
