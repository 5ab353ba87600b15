/*
 * kmirror: a mirror device written as a Linux driver, in the manner of the
 * kernel's HMM test driver (lib/test_hmm.c): what its character device's
 * open, read/write ioctls and release would call. Kernel code: it sees
 * only <linux/...>. glue.c is the one file that knows about mmulab.
 */
#ifndef KMIRROR_H
#define KMIRROR_H

#include <linux/types.h>

/* Deliberate bugs, one per bit, for the lab to find (glue.c's bug= option). */
#define KMIRROR_BUG_NO_SET_SEQ 0x1ul          /* invalidate never calls mmu_interval_set_seq */
#define KMIRROR_BUG_NO_READ_RETRY 0x2ul       /* the fault path installs without mmu_interval_read_retry */
#define KMIRROR_BUG_MUTEX_IN_NONBLOCKABLE 0x4ul /* invalidate takes the mutex with mutex_lock even when it may not sleep */
#define KMIRROR_BUG_KEEP_WRITE_TAG 0x8ul      /* a protection change keeps the entries and their write tag */

/* The device (test_hmm's dmirror_device): what every open shares. */
struct kmirror_device;
/* One open of the device by a process (test_hmm's dmirror). */
struct kmirror;

enum kmirror_stat {
    KMIRROR_STAT_FAULTS,
    KMIRROR_STAT_RETRIES,
    KMIRROR_STAT_INVALIDATIONS,
    KMIRROR_STAT_REFUSED,
    KMIRROR_STAT_READS,
    KMIRROR_STAT_WRITES,
    KMIRROR_STAT_COUNT,
};

struct kmirror_device *kmirror_device_create(unsigned long bugs);
void kmirror_device_destroy(struct kmirror_device *mdevice);
unsigned long kmirror_device_stat(struct kmirror_device *mdevice, enum kmirror_stat stat);

/* Mirrors current->mm. */
int kmirror_open(struct kmirror_device *mdevice, struct kmirror **out);
void kmirror_release(struct kmirror *mirror);
/* The device reads or writes `length` bytes at `address` of the mirrored
 * process (within one page), faulting the page in as needed. */
int kmirror_read(struct kmirror *mirror, unsigned long address, void *buffer, size_t length);
int kmirror_write(struct kmirror *mirror, unsigned long address, const void *buffer, size_t length);

#endif /* KMIRROR_H */
