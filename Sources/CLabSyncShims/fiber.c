/* User-space hand-over for the controlled scheduler: see the "Borrowed
 * threads" section of CLabSyncShims.h for the contract.
 *
 * A context is what the switching function pushed on its own stack (the
 * callee-saved registers, the x87 control word and MXCSR) and the stack
 * pointer left after the pushes, stored in the fiber. Switching to a context
 * loads its stack pointer and thread pointer, pops the rest and returns into
 * the function that saved it. */
#define _GNU_SOURCE
#include <limits.h>
#include <pthread.h>
#include <linux/futex.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/auxv.h>
#include <sys/syscall.h>
#include <unistd.h>
#include "CLabSyncShims.h"

enum { fiber_starting = 0, fiber_parked = 1, fiber_released = 2 };

#if defined(__x86_64__)

/* Whether the kernel lets user space write the thread pointer (FSGSBASE,
 * Linux 5.9 and later on CPUs that have it): a `wrfsbase` then costs
 * nanoseconds, where `arch_prctl` costs a system call. */
#ifndef HWCAP2_FSGSBASE
#define HWCAP2_FSGSBASE (1 << 1)
#endif

/* Pushes the callee-saved registers, then the x87 control word and MXCSR,
 * and stores the stack pointer left at (%rdi): a context to return into. */
#define SAVE_CONTEXT_INTO_RDI \
    "    pushq %rbp\n"        \
    "    pushq %rbx\n"        \
    "    pushq %r12\n"        \
    "    pushq %r13\n"        \
    "    pushq %r14\n"        \
    "    pushq %r15\n"        \
    "    subq $16, %rsp\n"    \
    "    stmxcsr 8(%rsp)\n"   \
    "    fnstcw (%rsp)\n"     \
    "    movq %rsp, (%rdi)\n"

/* mmulab_fiber_swap(void **save_sp, void *load_sp, uintptr_t load_tp, int wrfsbase)
 * Saves the caller's context (its stack pointer into *save_sp), moves to
 * the context at load_sp with thread pointer load_tp (0: keep the current
 * one) and returns into whoever saved that context.
 *
 * mmulab_fiber_leave(void **save_sp, void *park_top, mmulab_fiber *fiber)
 * Saves the caller's context and calls mmulab_fiber_park_loop(fiber) on the
 * stack that ends at park_top (16-byte aligned); never returns by itself. */
__asm__(
    ".text\n"
    ".p2align 4\n"
    ".type mmulab_fiber_swap, @function\n"
    "mmulab_fiber_swap:\n"
    SAVE_CONTEXT_INTO_RDI
    "    movq %rsi, %rsp\n"
    "    testq %rdx, %rdx\n"
    "    jz 2f\n"
    "    testl %ecx, %ecx\n"
    "    jz 1f\n"
    "    wrfsbase %rdx\n"
    "    jmp 2f\n"
    "1:  movl $158, %eax\n"          /* arch_prctl(ARCH_SET_FS, load_tp) */
    "    movl $0x1002, %edi\n"
    "    movq %rdx, %rsi\n"
    "    syscall\n"
    "2:  ldmxcsr 8(%rsp)\n"
    "    fldcw (%rsp)\n"
    "    addq $16, %rsp\n"
    "    popq %r15\n"
    "    popq %r14\n"
    "    popq %r13\n"
    "    popq %r12\n"
    "    popq %rbx\n"
    "    popq %rbp\n"
    "    ret\n"
    ".size mmulab_fiber_swap, .-mmulab_fiber_swap\n"
    "\n"
    ".p2align 4\n"
    ".type mmulab_fiber_leave, @function\n"
    "mmulab_fiber_leave:\n"
    SAVE_CONTEXT_INTO_RDI
    "    movq %rsi, %rsp\n"
    "    movq %rdx, %rdi\n"
    "    call mmulab_fiber_park_loop\n"
    "    ud2\n"
    ".size mmulab_fiber_leave, .-mmulab_fiber_leave\n");

void mmulab_fiber_swap(void **save_sp, void *load_sp, uintptr_t load_tp, int wrfsbase);
void mmulab_fiber_leave(void **save_sp, void *park_top, mmulab_fiber *fiber);
__attribute__((used, noreturn)) void mmulab_fiber_park_loop(mmulab_fiber *fiber);

int mmulab_fiber_supported(void) { return 1; }

int mmulab_fiber_can_write_thread_pointer(void) { return (getauxval(AT_HWCAP2) & HWCAP2_FSGSBASE) ? 1 : 0; }

/* The thread pointer: on x86-64 glibc's thread control block starts with
 * its own address, at %fs:0. */
static uintptr_t thread_pointer(void) {
    uintptr_t pointer;
    __asm__("movq %%fs:0, %0" : "=r"(pointer));
    return pointer;
}

#else

int mmulab_fiber_supported(void) { return 0; }
int mmulab_fiber_can_write_thread_pointer(void) { return 0; }

#endif

static void futex_wait(uint32_t *word, uint32_t expected) {
    syscall(SYS_futex, word, FUTEX_WAIT_PRIVATE, expected, NULL, NULL, 0);
}

static void futex_wake_all(uint32_t *word) {
    syscall(SYS_futex, word, FUTEX_WAKE_PRIVATE, INT_MAX, NULL, NULL, 0);
}

#if defined(__x86_64__)

/* On the park stack, with every signal blocked: says the context is saved,
 * sleeps until released, then resumes the fiber's last context on this,
 * its own kernel thread (whose thread pointer is already the fiber's). */
void mmulab_fiber_park_loop(mmulab_fiber *fiber) {
    __atomic_store_n(&fiber->state, fiber_parked, __ATOMIC_RELEASE);
    futex_wake_all(&fiber->state);
    while (__atomic_load_n(&fiber->state, __ATOMIC_ACQUIRE) != fiber_released) futex_wait(&fiber->state, fiber_parked);
    void *unused;
    mmulab_fiber_swap(&unused, fiber->stack_pointer, 0, 0);
    __builtin_unreachable();
}

void mmulab_fiber_adopt(mmulab_fiber *fiber) { fiber->thread_pointer = thread_pointer(); }

void mmulab_fiber_park(mmulab_fiber *fiber) {
    fiber->thread_pointer = thread_pointer();
    if (!fiber->park_stack) {
        fiber->park_stack = malloc(MMULAB_FIBER_PARK_STACK);
        if (!fiber->park_stack) abort();
    }
    // The kernel thread keeps only this stack while it is parked: a signal
    // delivered to it there would run a handler on 64 KiB, and the thread is
    // not the one the lab thinks runs (the fiber runs elsewhere).
    sigset_t all;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, NULL);
    uintptr_t top = ((uintptr_t)fiber->park_stack + MMULAB_FIBER_PARK_STACK) & ~(uintptr_t)15;
    mmulab_fiber_leave(&fiber->stack_pointer, (void *)top, fiber);
    // Here on the carrier: the first switch to this fiber returned.
}

void mmulab_fiber_switch(mmulab_fiber *from, const mmulab_fiber *to, int direct) {
    mmulab_fiber_swap(&from->stack_pointer, to->stack_pointer, to->thread_pointer, direct);
}

#else

void mmulab_fiber_adopt(mmulab_fiber *fiber) { (void)fiber; abort(); }
void mmulab_fiber_park(mmulab_fiber *fiber) { (void)fiber; abort(); }
void mmulab_fiber_switch(mmulab_fiber *from, const mmulab_fiber *to, int direct) {
    (void)from;
    (void)to;
    (void)direct;
    abort();
}

#endif

void mmulab_fiber_await_parked(mmulab_fiber *fiber) {
    uint32_t state;
    while ((state = __atomic_load_n(&fiber->state, __ATOMIC_ACQUIRE)) == fiber_starting) futex_wait(&fiber->state, state);
}

void mmulab_fiber_release(mmulab_fiber *fiber) {
    __atomic_store_n(&fiber->state, fiber_released, __ATOMIC_RELEASE);
    futex_wake_all(&fiber->state);
}

void mmulab_fiber_free_park_stack(mmulab_fiber *fiber) {
    free(fiber->park_stack);
    fiber->park_stack = NULL;
}

void *mmulab_carrier_altstack_begin(void) {
    stack_t current;
    if (sigaltstack(NULL, &current) == 0 && !(current.ss_flags & SS_DISABLE)) return NULL;
    void *stack = malloc(MMULAB_CARRIER_ALTSTACK);
    if (!stack) return NULL;
    stack_t given = { .ss_sp = stack, .ss_size = MMULAB_CARRIER_ALTSTACK, .ss_flags = 0 };
    if (sigaltstack(&given, NULL) != 0) {
        free(stack);
        return NULL;
    }
    return stack;
}

void mmulab_carrier_altstack_end(void *stack) {
    if (!stack) return;
    stack_t disable = { .ss_flags = SS_DISABLE };
    sigaltstack(&disable, NULL);
    free(stack);
}
