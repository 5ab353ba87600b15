/*
 * mmulab Linux shim: <linux/atomic.h>: atomic_t, atomic_long_t and
 * atomic64_t on the compiler's atomics. As in Linux, the operations that
 * return a value are fully ordered, and atomic_read/atomic_set/atomic_inc
 * and the other void ones are relaxed.
 */
#ifndef MMULAB_LINUX_ATOMIC_H
#define MMULAB_LINUX_ATOMIC_H

#include <linux/types.h>

typedef struct {
    int counter;
} atomic_t;
typedef struct {
    long counter;
} atomic_long_t;
typedef struct {
    s64 counter;
} atomic64_t;

#define ATOMIC_INIT(i) { (i) }
#define ATOMIC_LONG_INIT(i) { (i) }
#define ATOMIC64_INIT(i) { (i) }

#define MMULAB_LINUX_ATOMIC_OPS(prefix, type, value)                                                                    \
    static inline value prefix##_read(const type *v) { return __atomic_load_n(&v->counter, __ATOMIC_RELAXED); }        \
    static inline void prefix##_set(type *v, value i) { __atomic_store_n(&v->counter, i, __ATOMIC_RELAXED); }          \
    static inline void prefix##_add(value i, type *v) { __atomic_fetch_add(&v->counter, i, __ATOMIC_RELAXED); }        \
    static inline void prefix##_sub(value i, type *v) { __atomic_fetch_sub(&v->counter, i, __ATOMIC_RELAXED); }        \
    static inline void prefix##_inc(type *v) { __atomic_fetch_add(&v->counter, 1, __ATOMIC_RELAXED); }                 \
    static inline void prefix##_dec(type *v) { __atomic_fetch_sub(&v->counter, 1, __ATOMIC_RELAXED); }                 \
    static inline value prefix##_add_return(value i, type *v) {                                                        \
        return __atomic_add_fetch(&v->counter, i, __ATOMIC_SEQ_CST);                                                   \
    }                                                                                                                  \
    static inline value prefix##_sub_return(value i, type *v) {                                                        \
        return __atomic_sub_fetch(&v->counter, i, __ATOMIC_SEQ_CST);                                                   \
    }                                                                                                                  \
    static inline value prefix##_inc_return(type *v) { return __atomic_add_fetch(&v->counter, 1, __ATOMIC_SEQ_CST); } \
    static inline value prefix##_dec_return(type *v) { return __atomic_sub_fetch(&v->counter, 1, __ATOMIC_SEQ_CST); } \
    static inline bool prefix##_dec_and_test(type *v) { return prefix##_dec_return(v) == 0; }                         \
    static inline value prefix##_xchg(type *v, value i) { return __atomic_exchange_n(&v->counter, i, __ATOMIC_SEQ_CST); } \
    static inline value prefix##_cmpxchg(type *v, value old, value new_value) {                                        \
        __atomic_compare_exchange_n(&v->counter, &old, new_value, false, __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST);          \
        return old;                                                                                                    \
    }                                                                                                                  \
    /* Adds `a` unless the value is `u`; whether it added. */                                                          \
    static inline bool prefix##_add_unless(type *v, value a, value u) {                                                \
        value c = prefix##_read(v);                                                                                    \
        do {                                                                                                           \
            if (c == u) return false;                                                                                  \
        } while (!__atomic_compare_exchange_n(&v->counter, &c, c + a, true, __ATOMIC_SEQ_CST, __ATOMIC_RELAXED));      \
        return true;                                                                                                   \
    }                                                                                                                  \
    static inline bool prefix##_inc_not_zero(type *v) { return prefix##_add_unless(v, 1, 0); }

MMULAB_LINUX_ATOMIC_OPS(atomic, atomic_t, int)
MMULAB_LINUX_ATOMIC_OPS(atomic_long, atomic_long_t, long)
MMULAB_LINUX_ATOMIC_OPS(atomic64, atomic64_t, s64)

#undef MMULAB_LINUX_ATOMIC_OPS

#endif /* MMULAB_LINUX_ATOMIC_H */
