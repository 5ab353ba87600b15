/*
 * mmulab Linux shim: jiffies, ktime and delays on the host's clock and
 * sleep (<linux/jiffies.h>, <linux/ktime.h>, <linux/delay.h>).
 */
#include "internal.h"

#include <linux/delay.h>
#include <linux/jiffies.h>
#include <linux/ktime.h>

/* Linux starts jiffies five minutes before a 32-bit wrap. */
#define INITIAL_JIFFIES ((unsigned long)(unsigned int)(-300 * HZ))

unsigned long mmulab_linux_jiffies(void) {
    struct mmulab_linux_device *device = shim_require_device("jiffies");
    u64 now = device->host->now_ns(device->ctx);
    return INITIAL_JIFFIES + (unsigned long)(now / (1000000000ull / HZ));
}

ktime_t ktime_get(void) {
    struct mmulab_linux_device *device = shim_require_device("ktime_get");
    return (ktime_t)device->host->now_ns(device->ctx);
}

void msleep(unsigned int msecs) {
    struct mmulab_linux_device *device = shim_require_device("msleep");
    device->host->sleep_ns(device->ctx, (u64)msecs * 1000000u);
}

void usleep_range(unsigned long min_us, unsigned long max_us) {
    (void)max_us;
    struct mmulab_linux_device *device = shim_require_device("usleep_range");
    device->host->sleep_ns(device->ctx, (u64)min_us * 1000u);
}

void ndelay(unsigned long nsecs) {
    struct mmulab_linux_device *device = shim_require_device("udelay/ndelay");
    u64 until = device->host->now_ns(device->ctx) + nsecs;
    /* Spins without sleeping; yields so the host's scheduler (or a
     * controlled one, whose clock moves only with its steps) runs others. */
    while (device->host->now_ns(device->ctx) < until) device->host->yield(device->ctx);
}
