/*
 * mmulab Linux shim: <linux/jiffies.h>.
 *
 * `jiffies` counts at HZ = 1000 on the host's clock (host->now_ns: virtual
 * under --schedule, so timeouts replay), starting five minutes before it
 * wraps, as Linux's INITIAL_JIFFIES does, so a comparison that is not
 * wrap-safe shows up; use time_after and friends.
 */
#ifndef MMULAB_LINUX_JIFFIES_H
#define MMULAB_LINUX_JIFFIES_H

#include <linux/types.h>

#define HZ 1000
#define MAX_JIFFY_OFFSET ((long)(~0UL >> 1) - 1)

unsigned long mmulab_linux_jiffies(void);
#define jiffies (mmulab_linux_jiffies())

#define time_after(a, b) ((long)((b) - (a)) < 0)
#define time_before(a, b) time_after(b, a)
#define time_after_eq(a, b) ((long)((a) - (b)) >= 0)
#define time_before_eq(a, b) time_after_eq(b, a)
#define time_is_before_jiffies(a) time_after(jiffies, a)
#define time_is_after_jiffies(a) time_before(jiffies, a)

static inline unsigned long msecs_to_jiffies(unsigned int ms) { return (unsigned long)ms * HZ / 1000; }
static inline unsigned long usecs_to_jiffies(unsigned int us) { return ((unsigned long)us * HZ + 999999) / 1000000; }
static inline unsigned long nsecs_to_jiffies(u64 ns) { return (unsigned long)(ns / (1000000000ull / HZ)); }
static inline unsigned int jiffies_to_msecs(unsigned long j) { return (unsigned int)(j * 1000 / HZ); }
static inline unsigned int jiffies_to_usecs(unsigned long j) { return (unsigned int)(j * (1000000 / HZ)); }

#endif /* MMULAB_LINUX_JIFFIES_H */
