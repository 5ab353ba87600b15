/*
 * mmulab Linux shim: <linux/types.h>.
 *
 * The fixed-width integer names kernel code uses, on the C library's
 * <stdint.h>. The shim's headers are written here from the documented
 * kernel API; none of them is a copy of the kernel's.
 */
#ifndef MMULAB_LINUX_TYPES_H
#define MMULAB_LINUX_TYPES_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef uint8_t u8;
typedef uint16_t u16;
typedef uint32_t u32;
typedef uint64_t u64;
typedef int8_t s8;
typedef int16_t s16;
typedef int32_t s32;
typedef int64_t s64;

typedef unsigned int gfp_t;
typedef unsigned long pgoff_t;
typedef u64 phys_addr_t;
typedef u64 dma_addr_t;
typedef long ssize_t;
typedef int pid_t;
typedef unsigned int fmode_t;

/* Address-space annotations: meaningful to sparse only. */
#define __user
#define __kernel
#define __force
#define __iomem
#define __rcu

#endif /* MMULAB_LINUX_TYPES_H */
