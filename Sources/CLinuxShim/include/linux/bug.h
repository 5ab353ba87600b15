/*
 * mmulab Linux shim: <linux/bug.h>.
 *
 * WARN_ON and friends report to the lab as a finding of the run (the host
 * log's MMULAB_LOG_MISBEHAVING: "misbehaviour reported by a plugin"), with
 * the condition, the file, the line and the function, and evaluate to the
 * condition as in Linux. BUG_ON reports the same way as a "BUG" and then
 * carries on: in a kernel the thread would die at this point; the lab
 * cannot kill one of the host's threads, so the code after it runs, and
 * the finding says the run is not to be trusted past it.
 */
#ifndef MMULAB_LINUX_BUG_H
#define MMULAB_LINUX_BUG_H

#include <linux/compiler.h>
#include <linux/types.h>

/* Reports `kind` ("WARN_ON", "BUG_ON", ...) of `condition` at file:line in
 * `function` to the device the calling thread is working for. */
void mmulab_linux_report(const char *kind, const char *condition, const char *file, int line, const char *function);
__printf(5, 6) void mmulab_linux_reportf(const char *kind, const char *file, int line, const char *function,
                                          const char *format, ...);

#define WARN_ON(condition)                                                                                             \
    ({                                                                                                                 \
        int __mmulab_warn = !!(condition);                                                                             \
        if (unlikely(__mmulab_warn)) mmulab_linux_report("WARN_ON", #condition, MMULAB_LINUX_FILE, __LINE__, __func__); \
        unlikely(__mmulab_warn);                                                                                       \
    })

/* Once per call site for the life of the process (Linux: per boot). */
#define WARN_ON_ONCE(condition)                                                                                        \
    ({                                                                                                                 \
        static bool __mmulab_warned;                                                                                   \
        int __mmulab_warn = !!(condition);                                                                             \
        if (unlikely(__mmulab_warn) && !__atomic_exchange_n(&__mmulab_warned, true, __ATOMIC_RELAXED))                 \
            mmulab_linux_report("WARN_ON_ONCE", #condition, MMULAB_LINUX_FILE, __LINE__, __func__);                    \
        unlikely(__mmulab_warn);                                                                                       \
    })

#define WARN(condition, ...)                                                                                           \
    ({                                                                                                                 \
        int __mmulab_warn = !!(condition);                                                                             \
        if (unlikely(__mmulab_warn)) mmulab_linux_reportf("WARN", MMULAB_LINUX_FILE, __LINE__, __func__, __VA_ARGS__); \
        unlikely(__mmulab_warn);                                                                                       \
    })

#define WARN_ONCE(condition, ...)                                                                                      \
    ({                                                                                                                 \
        static bool __mmulab_warned;                                                                                   \
        int __mmulab_warn = !!(condition);                                                                             \
        if (unlikely(__mmulab_warn) && !__atomic_exchange_n(&__mmulab_warned, true, __ATOMIC_RELAXED))                 \
            mmulab_linux_reportf("WARN_ONCE", MMULAB_LINUX_FILE, __LINE__, __func__, __VA_ARGS__);                     \
        unlikely(__mmulab_warn);                                                                                       \
    })

#define BUG_ON(condition)                                                                                              \
    do {                                                                                                               \
        if (unlikely(condition)) mmulab_linux_report("BUG_ON", #condition, MMULAB_LINUX_FILE, __LINE__, __func__);     \
    } while (0)

#define BUG() mmulab_linux_report("BUG", "", MMULAB_LINUX_FILE, __LINE__, __func__)

/* CONFIG_DEBUG_VM is on in the lab. */
#define VM_WARN_ON(condition) ((void)WARN_ON(condition))
#define VM_WARN_ON_ONCE(condition) ((void)WARN_ON_ONCE(condition))
#define VM_BUG_ON(condition) BUG_ON(condition)

#define BUILD_BUG_ON(condition) _Static_assert(!(condition), "BUILD_BUG_ON(" #condition ")")

#endif /* MMULAB_LINUX_BUG_H */
