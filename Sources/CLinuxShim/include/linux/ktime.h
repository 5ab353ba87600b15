/*
 * mmulab Linux shim: <linux/ktime.h>: monotonic nanoseconds from the
 * host's clock (host->now_ns; virtual under --schedule).
 */
#ifndef MMULAB_LINUX_KTIME_H
#define MMULAB_LINUX_KTIME_H

#include <linux/types.h>

typedef s64 ktime_t;

ktime_t ktime_get(void);
static inline u64 ktime_get_ns(void) { return (u64)ktime_get(); }
static inline s64 ktime_to_ns(ktime_t t) { return t; }
static inline s64 ktime_to_us(ktime_t t) { return t / 1000; }
static inline ktime_t ktime_sub(ktime_t a, ktime_t b) { return a - b; }
static inline ktime_t ktime_add_ns(ktime_t t, u64 ns) { return t + (s64)ns; }
static inline s64 ktime_ms_delta(ktime_t later, ktime_t earlier) { return (later - earlier) / 1000000; }

#endif /* MMULAB_LINUX_KTIME_H */
