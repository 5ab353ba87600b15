/* The plugin oops handler: see include/mmulab_oops.h. Everything the
 * handler calls is async-signal-safe (write, _exit, syscall, prctl,
 * sigaction); it reads only what was prepared before the signal. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <link.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <ucontext.h>
#include <unistd.h>
#include "mmulab_oops.h"
#include "CLabSyncShims.h"

__thread mmulab_oops_stack mmulab_oops_thread_stack;
volatile int mmulab_oops_armed;
mmulab_oops_event mmulab_oops_events[MMULAB_OOPS_EVENTS];
uint64_t mmulab_oops_event_count;

static int exit_status = MMULAB_OOPS_EXIT_STATUS;
static char context_text[4096];
static int in_oops;
static const int signals[] = { SIGSEGV, SIGBUS, SIGILL, SIGFPE, SIGTRAP, SIGABRT };
#define SIGNAL_COUNT (sizeof signals / sizeof signals[0])
static struct sigaction previous[SIGNAL_COUNT];
/* Set by the one call of mmulab_oops_install that installs (no lock: the
 * lab's locks are LabSync's, and this runs once, before any run). */
static int installing;

/* The executable code of the plugins loaded, for crashes on their own threads. */
struct image {
    uintptr_t base, start, end;
    char name[128];
    int ready; /* set last, with release ordering: the entry is complete */
};
static struct image images[64];
static int image_count; /* slots claimed (atomically) */

/* The first push of a thread after installation: out of line, so the
 * common path of mmulab_oops_thread saves nothing and calls nothing. */
static __attribute__((noinline)) mmulab_oops_stack *prepared_thread(void) {
    mmulab_oops_prepare_thread();
    return &mmulab_oops_thread_stack;
}

mmulab_oops_stack *mmulab_oops_thread(void) {
    mmulab_oops_stack *stack = &mmulab_oops_thread_stack;
    if (__builtin_expect(mmulab_oops_armed && !stack->ready, 0)) return prepared_thread();
    return stack;
}

/* ---- alternate stacks: one per thread, freed when the thread ends ---- */

#define ALTERNATE_STACK_SIZE (128 * 1024)
static pthread_key_t stack_key;
static pthread_once_t stack_key_once = PTHREAD_ONCE_INIT;

static void free_stack(void *stack) {
    stack_t disable = { .ss_flags = SS_DISABLE };
    sigaltstack(&disable, NULL);
    free(stack);
}

static void make_stack_key(void) { pthread_key_create(&stack_key, free_stack); }

void mmulab_oops_prepare_thread(void) {
    mmulab_oops_thread_stack.ready = true;
    stack_t current;
    if (sigaltstack(NULL, &current) == 0 && !(current.ss_flags & SS_DISABLE)) return; /* someone gave it one */
    void *stack = malloc(ALTERNATE_STACK_SIZE);
    if (!stack) return;
    stack_t given = { .ss_sp = stack, .ss_size = ALTERNATE_STACK_SIZE, .ss_flags = 0 };
    if (sigaltstack(&given, NULL) != 0) {
        free(stack);
        return;
    }
    pthread_once(&stack_key_once, make_stack_key);
    pthread_setspecific(stack_key, stack);
}

/* ---- async-signal-safe output ---- */

static void out(const char *text) {
    size_t length = strlen(text);
    while (length > 0) {
        ssize_t written = write(STDERR_FILENO, text, length);
        if (written < 0 && errno == EINTR) continue;
        if (written <= 0) return;
        text += written;
        length -= (size_t)written;
    }
}

static void out_unsigned(uint64_t value, int base) {
    char buffer[32];
    int at = (int)sizeof buffer - 1;
    buffer[at] = 0;
    do {
        int digit = (int)(value % (uint64_t)base);
        buffer[--at] = (char)(digit < 10 ? '0' + digit : 'a' + digit - 10);
        value /= (uint64_t)base;
    } while (value > 0 && at > 0);
    if (base == 16) {
        buffer[--at] = 'x';
        buffer[--at] = '0';
    }
    out(&buffer[at]);
}

static void out_hex(uint64_t value) { out_unsigned(value, 16); }
static void out_decimal(uint64_t value) { out_unsigned(value, 10); }

static const char *signal_name(int sig) {
    switch (sig) {
    case SIGSEGV: return "SIGSEGV (invalid memory access)";
    case SIGBUS: return "SIGBUS (bus error)";
    case SIGILL: return "SIGILL (illegal instruction, or a trap)";
    case SIGFPE: return "SIGFPE (arithmetic fault)";
    case SIGTRAP: return "SIGTRAP (a trap)";
    case SIGABRT: return "SIGABRT (abort)";
    default: return "a fatal signal";
    }
}

static const char *event_name(uint32_t event) {
    static const char *names[] = { "munmap", "mremap", "madviseDontNeed", "mprotect", "writeProtect", "softDirty", "vmscan",
                                   "migrate", "ksm", "cowBreak", "exclusive", "exit", "oomReap" };
    return event < sizeof names / sizeof names[0] ? names[event] : "?";
}

static const char *trail_kind(uint8_t kind) {
    static const char *names[] = { "invalidate start", "invalidate end", "change_pte (KSM merge)", "clear_young (reclaim asked the devices)",
                                   "release (address space exit)" };
    return kind < sizeof names / sizeof names[0] ? names[kind] : "?";
}

static uintptr_t program_counter(void *context) {
    ucontext_t *uc = context;
    if (!uc) return 0;
#if defined(__x86_64__)
    return (uintptr_t)uc->uc_mcontext.gregs[REG_RIP];
#elif defined(__aarch64__)
    return (uintptr_t)uc->uc_mcontext.pc;
#else
    return 0;
#endif
}

static const struct image *image_of(uintptr_t pc) {
    int count = __atomic_load_n(&image_count, __ATOMIC_ACQUIRE);
    if (count > 64) count = 64;
    for (int i = 0; i < count; i++) {
        if (!__atomic_load_n(&images[i].ready, __ATOMIC_ACQUIRE)) continue;
        if (pc >= images[i].start && pc < images[i].end) return &images[i];
    }
    return NULL;
}

static void out_frame(const mmulab_oops_frame *frame) {
    if (frame->service) {
        out("  in the host's ");
        out(frame->service);
        out(" service, called by ");
        out(frame->plugin ? frame->plugin : "a plugin");
    } else {
        out("  in ");
        out(frame->plugin ? frame->plugin : "a plugin");
        out(" ");
        out(frame->operation ? frame->operation : "(unknown callback)");
    }
    switch (frame->subject) {
    case MMULAB_OOPS_SUBJECT_RANGE:
        out(", range [");
        out_hex(frame->b);
        out(", ");
        out_hex(frame->c);
        out(") of mm#");
        out_decimal(frame->a);
        out(", event ");
        out(event_name(frame->event));
        out((frame->d & 1) ? ", blockable" : ", non-blockable");
        break;
    case MMULAB_OOPS_SUBJECT_BINDING:
        out(", binding #");
        out_decimal(frame->binding);
        out(" (device ");
        out_hex(frame->d);
        out(" -> mm#");
        out_decimal(frame->a);
        out(" [");
        out_hex(frame->b);
        out(", +");
        out_decimal(frame->c);
        out("))");
        break;
    case MMULAB_OOPS_SUBJECT_SPACE:
        out(", mm#");
        out_decimal(frame->a);
        if (frame->c > frame->b) {
            out(" [");
            out_hex(frame->b);
            out(", ");
            out_hex(frame->c);
            out(")");
        }
        break;
    default:
        if (frame->binding) {
            out(", binding #");
            out_decimal(frame->binding);
        }
        break;
    }
    out("\n");
}

static void out_trail(void) {
    uint64_t count = __atomic_load_n(&mmulab_oops_event_count, __ATOMIC_ACQUIRE);
    if (count == 0) {
        out("last events of the trail: none recorded\n");
        return;
    }
    out("last events of the trail, oldest first:\n");
    uint64_t first = count > MMULAB_OOPS_EVENTS ? count - MMULAB_OOPS_EVENTS : 0;
    for (uint64_t i = first; i < count; i++) {
        const mmulab_oops_event *event = &mmulab_oops_events[i % MMULAB_OOPS_EVENTS];
        if (!event->valid) continue;
        out("  t=");
        out_decimal(event->nanoseconds / 1000);
        out(" us ");
        out(trail_kind(event->kind));
        if (event->kind <= 1) {
            out(" ");
            out(event_name(event->event));
        }
        out(" mm#");
        out_decimal(event->address_space);
        if (event->kind != 4) {
            out(" [");
            out_hex(event->start);
            out(", ");
            out_hex(event->end);
            out(")");
        }
        if (event->kind == 0 && !event->blockable) out(" non-blockable");
        out("\n");
    }
}

/* Passes a crash that is not a plugin's to whoever handled it before. */
static void chain(int sig, siginfo_t *info, void *context) {
    for (size_t i = 0; i < SIGNAL_COUNT; i++) {
        if (signals[i] != sig) continue;
        sigaction(sig, &previous[i], NULL);
        if (previous[i].sa_flags & SA_SIGINFO) {
            if (previous[i].sa_sigaction) previous[i].sa_sigaction(sig, info, context);
        } else if (previous[i].sa_handler != SIG_DFL && previous[i].sa_handler != SIG_IGN) {
            previous[i].sa_handler(sig);
        }
        /* SIG_DFL: a fault re-executes and now kills the process; abort()
         * raises again with the default action. */
        return;
    }
}

static void handler(int sig, siginfo_t *info, void *context) {
    uint32_t depth = mmulab_oops_thread_stack.depth;
    uintptr_t pc = program_counter(context);
    const struct image *image = image_of(pc);
    if (depth == 0 && !image) {
        chain(sig, info, context);
        return;
    }
    if (__atomic_exchange_n(&in_oops, 1, __ATOMIC_SEQ_CST)) {
        for (;;) pause(); /* another thread is writing its oops and will end the process */
    }
    out("\n==================== mmulab oops ====================\n");
    out("BUG: a plugin crashed the host: ");
    out(signal_name(sig));
    if (sig == SIGSEGV || sig == SIGBUS) {
        out(" at address ");
        out_hex((uint64_t)(uintptr_t)info->si_addr);
        if ((uintptr_t)info->si_addr < 4096) out(" (a NULL pointer dereference)");
    }
    out("\n");
    out("pc: ");
    out_hex(pc);
    if (image) {
        out(" in ");
        out(image->name);
        out(" + ");
        out_hex(pc - image->base);
    }
    out("\nthread: tid ");
    const char *label = mmulab_thread_label;
    if (label) {
        /* A controlled run's thread, perhaps running on the run's one
         * kernel thread: the lab's name for it, not the kernel's. */
        out_decimal((uint64_t)mmulab_thread_label_tid);
        out(" '");
        out(label);
        out("'");
    } else {
        out_decimal((uint64_t)syscall(SYS_gettid));
        char name[17] = { 0 };
        if (prctl(PR_GET_NAME, name, 0, 0, 0) == 0) {
            out(" '");
            out(name);
            out("'");
        }
    }
    out("\n");
    if (depth == 0) {
        out("  in the plugin's own code, on a thread of its own (no host call in progress)\n");
    } else {
        out("call stack, innermost first:\n");
        if (depth > MMULAB_OOPS_MAX_FRAMES) {
            out("  (");
            out_decimal(depth - MMULAB_OOPS_MAX_FRAMES);
            out(" more frames not kept)\n");
        }
        uint32_t stored = depth < MMULAB_OOPS_MAX_FRAMES ? depth : MMULAB_OOPS_MAX_FRAMES;
        for (uint32_t i = stored; i > 0; i--) out_frame(&mmulab_oops_thread_stack.frames[i - 1]);
        if (mmulab_oops_thread_stack.frames[stored - 1].service) {
            out("  (a crash inside a host service: the plugin passed it something it could not check, such as a bad buffer pointer)\n");
        }
    }
    out_trail();
    if (context_text[0]) {
        out(context_text);
        out("\n");
    }
    out("exit status ");
    out_decimal((uint64_t)exit_status);
    out(": the run stopped here (no summary, no report)\n");
    out("=====================================================\n");
    _exit(exit_status);
}

int mmulab_oops_install(int status) {
    if (__atomic_exchange_n(&installing, 1, __ATOMIC_ACQ_REL)) return 0; /* installed already, or being installed */
    exit_status = status;
    struct sigaction action;
    memset(&action, 0, sizeof action);
    action.sa_sigaction = handler;
    action.sa_flags = SA_SIGINFO | SA_ONSTACK;
    sigemptyset(&action.sa_mask);
    for (size_t i = 0; i < SIGNAL_COUNT; i++) {
        if (sigaction(signals[i], &action, &previous[i]) != 0) {
            int error = errno;
            for (size_t j = 0; j < i; j++) sigaction(signals[j], &previous[j], NULL);
            __atomic_store_n(&installing, 0, __ATOMIC_RELEASE);
            return error;
        }
    }
    __atomic_store_n(&mmulab_oops_armed, 1, __ATOMIC_RELEASE);
    mmulab_oops_prepare_thread();
    return 0;
}

void mmulab_oops_set_context(const char *text) {
    size_t length = strlen(text);
    if (length >= sizeof context_text) length = sizeof context_text - 1;
    memcpy(context_text, text, length);
    context_text[length] = 0;
}

struct image_search {
    uintptr_t symbol;
    uintptr_t base, start, end;
};

static int find_segments(struct dl_phdr_info *info, size_t size, void *data) {
    (void)size;
    struct image_search *search = data;
    bool holds = false;
    for (int i = 0; i < info->dlpi_phnum; i++) {
        const ElfW(Phdr) *header = &info->dlpi_phdr[i];
        uintptr_t start = info->dlpi_addr + header->p_vaddr;
        if (header->p_type == PT_LOAD && search->symbol >= start && search->symbol < start + header->p_memsz) holds = true;
    }
    if (!holds) return 0;
    search->base = info->dlpi_addr;
    for (int i = 0; i < info->dlpi_phnum; i++) {
        const ElfW(Phdr) *header = &info->dlpi_phdr[i];
        if (header->p_type != PT_LOAD || !(header->p_flags & PF_X)) continue;
        uintptr_t start = info->dlpi_addr + header->p_vaddr;
        uintptr_t end = start + header->p_memsz;
        if (search->start == 0 || start < search->start) search->start = start;
        if (end > search->end) search->end = end;
    }
    return 1;
}

void mmulab_oops_note_image(const void *symbol, const char *name) {
    struct image_search search = { .symbol = (uintptr_t)symbol };
    dl_iterate_phdr(find_segments, &search);
    if (search.end <= search.start) return;
    int count = __atomic_load_n(&image_count, __ATOMIC_ACQUIRE);
    for (int i = 0; i < count && i < 64; i++) {
        if (__atomic_load_n(&images[i].ready, __ATOMIC_ACQUIRE) && images[i].start == search.start) return; /* known */
    }
    /* A slot of its own (two loads of one plugin at once may both take one: harmless). */
    int slot = __atomic_fetch_add(&image_count, 1, __ATOMIC_ACQ_REL);
    if (slot >= 64) return;
    images[slot].base = search.base;
    images[slot].start = search.start;
    images[slot].end = search.end;
    strncpy(images[slot].name, name, sizeof images[slot].name - 1);
    __atomic_store_n(&images[slot].ready, 1, __ATOMIC_RELEASE);
}
