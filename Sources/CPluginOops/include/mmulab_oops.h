/*
 * The plugin oops: what the host prints when a plugin crashes it.
 *
 * The host marks every call into a plugin (a notifier callback, attach,
 * access, ...) and every host service a plugin calls with a frame on a
 * per-thread stack: the plugin instance, the callback or service, and the
 * range or binding being handled. When SIGSEGV, SIGBUS, SIGILL, SIGFPE,
 * SIGTRAP or SIGABRT arrives on a thread with such a frame (or with its
 * program counter inside a plugin's code), a handler running on an
 * alternate signal stack writes, with write(2) only, what a kernel oops
 * would: the signal and faulting address, the frames, the last events of
 * the run's trail, the seed and the replay command; then the process exits
 * with MMULAB_OOPS_EXIT_STATUS. Every text it writes was prepared before:
 * the handler formats only integers, into its own stack buffer. A signal on
 * a thread with no frame and a program counter in no plugin is the host's
 * own crash: the previous handler (the Swift runtime's backtracer) gets it.
 *
 * Frames cost a few stores in thread-local storage whether or not the
 * handler is installed; the alternate stack is made for a thread the first
 * time it pushes a frame after installation.
 */
#ifndef MMULAB_OOPS_H
#define MMULAB_OOPS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* The exit status of a run a plugin crashed (documented in the README). */
#define MMULAB_OOPS_EXIT_STATUS 4
/* Frames kept per thread; deeper calls are counted, not described. */
#define MMULAB_OOPS_MAX_FRAMES 16
/* Trail events kept for the report. */
#define MMULAB_OOPS_EVENTS 16

/* What the numbers of a frame describe. */
enum mmulab_oops_subject {
    MMULAB_OOPS_SUBJECT_NONE = 0,
    MMULAB_OOPS_SUBJECT_RANGE = 1,   /* a: address space, b: start, c: end, event, d: flags */
    MMULAB_OOPS_SUBJECT_BINDING = 2, /* a: address space, b: start, c: length, d: device address */
    MMULAB_OOPS_SUBJECT_SPACE = 3,   /* a: address space, b: start, c: end (young checks, change_pte, release) */
};

typedef struct mmulab_oops_frame {
    const char *plugin;    /* the instance, as the run names it: prepared by the host, lives as long as the instance */
    const char *operation; /* a static string: the callback or plugin operation; NULL for a service frame */
    const char *service;   /* a static string: the host service a plugin called; NULL for a call into the plugin */
    const void *instance;  /* the host context of the instance */
    const void *object;    /* what the call is about (an interval's handle for its invalidate callback) */
    uint64_t binding;      /* the binding's number in its instance, 0 for none */
    uint32_t subject;      /* enum mmulab_oops_subject */
    uint32_t event;        /* enum mmulab_event, for a range */
    uint64_t a, b, c, d;
    uint64_t sequence;     /* the current_seq given to an interval's invalidate callback */
} mmulab_oops_frame;

/* The calling thread's frames, in one thread-local block: a push or a pop
 * computes its address once and writes plain stores (no allocation, no
 * reference counting, no lock). */
typedef struct mmulab_oops_stack {
    uint32_t depth; /* frames pushed, stored or not (past MMULAB_OOPS_MAX_FRAMES they are counted only) */
    bool ready;     /* the thread has its alternate signal stack (made after installation) */
    /* The frames; the one past the last is where deeper frames are written
     * (never read: the handler prints MMULAB_OOPS_MAX_FRAMES at most). */
    mmulab_oops_frame frames[MMULAB_OOPS_MAX_FRAMES + 1];
} mmulab_oops_stack;

extern __thread mmulab_oops_stack mmulab_oops_thread_stack;
extern volatile int mmulab_oops_armed;

/* Gives the calling thread its alternate signal stack (after installation). */
void mmulab_oops_prepare_thread(void);

/* The calling thread's stack, ready for a push: the thread has its
 * alternate signal stack if the handler is installed. Out of line (one TLS
 * address and a test); Swift pushes and pops through it with plain stores,
 * writing the frame at `frames[min(depth, MMULAB_OOPS_MAX_FRAMES)]` and
 * then `depth + 1` with release ordering, so the handler, which runs on the
 * same thread, never counts a frame before it is complete. */
mmulab_oops_stack *_Nonnull mmulab_oops_thread(void);

/* Pushes a frame (its fields cleared but for these) and returns it for the
 * caller to fill before it calls the plugin. (A signal before the caller
 * has filled it reads the frame as pushed here, cleared.) */
static inline mmulab_oops_frame *mmulab_oops_push(const char *plugin, const char *operation, const char *service, const void *instance) {
    mmulab_oops_stack *stack = mmulab_oops_thread();
    uint32_t depth = stack->depth;
    mmulab_oops_frame *frame = &stack->frames[depth < MMULAB_OOPS_MAX_FRAMES ? depth : MMULAB_OOPS_MAX_FRAMES];
    *frame = (mmulab_oops_frame){ .plugin = plugin, .operation = operation, .service = service, .instance = instance };
    /* The frame is written before the handler can see it counted. */
    __atomic_signal_fence(__ATOMIC_SEQ_CST);
    stack->depth = depth + 1;
    return frame;
}

/* Pops the innermost frame. */
static inline void mmulab_oops_pop(void) {
    __atomic_signal_fence(__ATOMIC_SEQ_CST);
    mmulab_oops_thread_stack.depth -= 1;
}

/* How many frames the calling thread has (stored or not). */
static inline uint32_t mmulab_oops_frame_depth(void) { return mmulab_oops_thread_stack.depth; }

/* The calling thread's frame at `index` (0: outermost), or NULL past the stored ones. */
static inline const mmulab_oops_frame *mmulab_oops_frame_at(uint32_t index) {
    return index < mmulab_oops_thread_stack.depth && index < MMULAB_OOPS_MAX_FRAMES ? &mmulab_oops_thread_stack.frames[index] : NULL;
}

/* One event of the run's trail, kept for the report (kind: 0 start, 1 end,
 * 2 change_pte, 3 young check, 4 release). Lock-free; an entry being
 * written while a crash reads it may come out torn. */
typedef struct mmulab_oops_event {
    uint64_t nanoseconds; /* since the run's start */
    uint64_t address_space, start, end;
    uint8_t kind, event, blockable, valid;
} mmulab_oops_event;

extern mmulab_oops_event mmulab_oops_events[MMULAB_OOPS_EVENTS];
extern uint64_t mmulab_oops_event_count;

static inline void mmulab_oops_note_event(uint64_t nanoseconds, uint8_t kind, uint8_t event, bool blockable, uint64_t address_space,
                                          uint64_t start, uint64_t end) {
    uint64_t index = __atomic_fetch_add(&mmulab_oops_event_count, 1, __ATOMIC_RELAXED) % MMULAB_OOPS_EVENTS;
    mmulab_oops_events[index] = (mmulab_oops_event){ nanoseconds, address_space, start, end, kind, event, blockable, 1 };
}

/* Installs the handler for SIGSEGV, SIGBUS, SIGILL, SIGFPE, SIGTRAP and
 * SIGABRT (keeping the previous ones for crashes that are not a plugin's).
 * Idempotent. Returns 0, or an errno. */
int mmulab_oops_install(int exit_status);

/* What the report ends with: the seed and the replay command (copied; at
 * most 4 KiB kept). Set before the run. */
void mmulab_oops_set_context(const char *text);

/* Remembers the executable code of the shared object that holds `symbol`
 * (a plugin's entry point) under `name`, so a crash on a thread of the
 * plugin's own, outside any host call, is still reported as the plugin's.
 * At most 64 images. */
void mmulab_oops_note_image(const void *symbol, const char *name);

#endif
