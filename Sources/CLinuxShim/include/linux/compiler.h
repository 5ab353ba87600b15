/*
 * mmulab Linux shim: <linux/compiler.h>: branch hints, single-copy
 * accesses and attributes, with the kernel's names and meaning.
 */
#ifndef MMULAB_LINUX_COMPILER_H
#define MMULAB_LINUX_COMPILER_H

#define likely(x) __builtin_expect(!!(x), 1)
#define unlikely(x) __builtin_expect(!!(x), 0)

/* One access of the exact width, never split, merged or refetched. */
#define READ_ONCE(x) (*(const volatile __typeof__(x) *)&(x))
#define WRITE_ONCE(x, val)                                                                                             \
    do {                                                                                                               \
        *(volatile __typeof__(x) *)&(x) = (val);                                                                       \
    } while (0)

#define barrier() __asm__ __volatile__("" ::: "memory")
#define smp_mb() __atomic_thread_fence(__ATOMIC_SEQ_CST)
#define smp_rmb() __atomic_thread_fence(__ATOMIC_ACQUIRE)
#define smp_wmb() __atomic_thread_fence(__ATOMIC_RELEASE)

#ifndef __always_inline /* the C library's <sys/cdefs.h> has the same */
#define __always_inline inline __attribute__((__always_inline__))
#endif
#define noinline __attribute__((__noinline__))
#define __maybe_unused __attribute__((__unused__))
#define __always_unused __attribute__((__unused__))
#define __must_check __attribute__((__warn_unused_result__))
#define __printf(a, b) __attribute__((__format__(printf, a, b)))
#define __aligned(x) __attribute__((__aligned__(x)))
#define __packed __attribute__((__packed__))
#define __cold __attribute__((__cold__))
#define fallthrough __attribute__((__fallthrough__))

/* The file a report names: its base name where the compiler knows it. */
#ifdef __FILE_NAME__
#define MMULAB_LINUX_FILE __FILE_NAME__
#else
#define MMULAB_LINUX_FILE __FILE__
#endif

#endif /* MMULAB_LINUX_COMPILER_H */
