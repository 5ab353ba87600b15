/*
 * mmulab Linux shim: <linux/delay.h>. msleep and usleep_range sleep on
 * the host (host->sleep_ns: a context violation where the thread may not
 * sleep; virtual time under --schedule). udelay, ndelay and mdelay busy-
 * wait without sleeping, yielding to the host's scheduler while they
 * spin, so they are allowed anywhere; so is fsleep of 10 us or less,
 * which spins as Linux's does.
 */
#ifndef MMULAB_LINUX_DELAY_H
#define MMULAB_LINUX_DELAY_H

#include <linux/types.h>

void msleep(unsigned int msecs);
void usleep_range(unsigned long min_us, unsigned long max_us);
void ndelay(unsigned long nsecs);
static inline void udelay(unsigned long usecs) { ndelay(usecs * 1000); }
static inline void mdelay(unsigned long msecs) { ndelay(msecs * 1000000); }
/* Linux's choice of delay for a duration: a spin up to 10 us (no sleep,
 * so allowed anywhere), usleep_range up to 20 ms, msleep beyond. */
static inline void fsleep(unsigned long usecs) {
    if (usecs <= 10)
        udelay(usecs);
    else if (usecs <= 20000)
        usleep_range(usecs, 2 * usecs);
    else
        msleep((unsigned int)((usecs + 999) / 1000));
}
/* Sleeps as msleep; returns the milliseconds left when a signal cut it
 * short, which here (no signals) is always 0. */
static inline unsigned long msleep_interruptible(unsigned int msecs) {
    msleep(msecs);
    return 0;
}

#endif /* MMULAB_LINUX_DELAY_H */
