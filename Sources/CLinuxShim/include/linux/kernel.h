/*
 * mmulab Linux shim: <linux/kernel.h>: container_of, ARRAY_SIZE, the
 * type-checked min/max family, alignment helpers, and what kernel.h pulls
 * in (bug.h, printk.h, err.h, errno.h).
 */
#ifndef MMULAB_LINUX_KERNEL_H
#define MMULAB_LINUX_KERNEL_H

#include <linux/bug.h>
#include <linux/compiler.h>
#include <linux/err.h>
#include <linux/errno.h>
#include <linux/printk.h>
#include <linux/types.h>

#ifndef ULONG_MAX
#define ULONG_MAX (~0UL)
#endif
#ifndef LONG_MAX
#define LONG_MAX ((long)(ULONG_MAX >> 1))
#endif
#ifndef UINT_MAX
#define UINT_MAX (~0U)
#endif
#ifndef INT_MAX
#define INT_MAX ((int)(~0U >> 1))
#endif
#define U8_MAX ((u8)~0U)
#define U16_MAX ((u16)~0U)
#define U32_MAX ((u32)~0U)
#define U64_MAX ((u64)~0ULL)
#define S64_MAX ((s64)(U64_MAX >> 1))

#define container_of(ptr, type, member) ((type *)((char *)(ptr) - offsetof(type, member)))
#define ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))

#define min(x, y)                                                                                                      \
    ({                                                                                                                 \
        __typeof__(x) __mmulab_x = (x);                                                                                \
        __typeof__(y) __mmulab_y = (y);                                                                                \
        (void)(&__mmulab_x == &__mmulab_y);                                                                            \
        __mmulab_x < __mmulab_y ? __mmulab_x : __mmulab_y;                                                             \
    })
#define max(x, y)                                                                                                      \
    ({                                                                                                                 \
        __typeof__(x) __mmulab_x = (x);                                                                                \
        __typeof__(y) __mmulab_y = (y);                                                                                \
        (void)(&__mmulab_x == &__mmulab_y);                                                                            \
        __mmulab_x > __mmulab_y ? __mmulab_x : __mmulab_y;                                                             \
    })
#define min_t(type, x, y) min((type)(x), (type)(y))
#define max_t(type, x, y) max((type)(x), (type)(y))
#define clamp(value, low, high) min(max(value, low), high)

#define ALIGN(x, a) (((x) + ((__typeof__(x))(a) - 1)) & ~((__typeof__(x))(a) - 1))
#define ALIGN_DOWN(x, a) ((x) & ~((__typeof__(x))(a) - 1))
#define IS_ALIGNED(x, a) (((x) & ((__typeof__(x))(a) - 1)) == 0)
#define DIV_ROUND_UP(n, d) (((n) + (d) - 1) / (d))
#define round_up(x, y) ALIGN(x, y)
#define round_down(x, y) ALIGN_DOWN(x, y)
#define BIT(nr) (1UL << (nr))
#define BIT_ULL(nr) (1ULL << (nr))

#endif /* MMULAB_LINUX_KERNEL_H */
