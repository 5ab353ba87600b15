/* The KVM guest: one VM, one vCPU, a few instructions of 64-bit user-mode
 * code that read or write one 32-bit word at a guest-physical address and
 * report it through port I/O. This is how a real KVM user's guest reaches
 * the memory KVM's MMU notifier protects: every access goes through KVM's
 * own page tables, faulting the host page in (get_user_pages) on a miss.
 *
 * Set up as /dev/kvm on these machines requires (PVM, see the README):
 * the guest runs at CPL3 in long mode on identity page tables, with
 * IOPL 3 so its `in`/`out` instructions exit to us. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <linux/kvm.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <unistd.h>

#include "runner.h"

/* Guest-physical layout of slot 0 (2 MiB of low memory). */
enum {
    LOW_BYTES = 2 << 20,
    PML4_AT = 0x1000,
    PDPT_AT = 0x2000,
    PD_AT = 0x3000, /* four page directories, 0x3000-0x6fff */
    STACK_TOP = 0x7000,
    CODE_AT = 0x8000,
};

/* Ports the guest uses. */
enum { PORT_COMMAND = 0x10, PORT_ADDRESS = 0x11, PORT_RESULT = 0x12, PORT_VALUE = 0x13, PORT_ACK = 0x14 };

/*
 * loop:  mov dx, 0x10 ; in eax, dx ; mov ebx, eax      command: 0 read, 1 write
 *        mov dx, 0x11 ; in eax, dx ; mov edi, eax      guest-physical address (< 4 GiB)
 *        test ebx, ebx ; jnz write
 *        mov eax, [rdi] ; mov dx, 0x12 ; out dx, eax ; jmp loop
 * write: mov dx, 0x13 ; in eax, dx ; mov [rdi], eax
 *        mov dx, 0x14 ; out dx, eax ; jmp loop
 */
static const uint8_t guest_code[] = {
    0x66, 0xBA, 0x10, 0x00, 0xED, 0x89, 0xC3,       /*  0: command */
    0x66, 0xBA, 0x11, 0x00, 0xED, 0x89, 0xC7,       /*  7: address */
    0x85, 0xDB, 0x75, 9,                            /* 14: test; jnz +9 (to 27) */
    0x8B, 0x07, 0x66, 0xBA, 0x12, 0x00, 0xEF,       /* 18: read, report */
    0xEB, 0xE5,                                     /* 25: jmp 0 */
    0x66, 0xBA, 0x13, 0x00, 0xED, 0x89, 0x07,       /* 27: value, store */
    0x66, 0xBA, 0x14, 0x00, 0xEF, 0xEB, 0xD7,       /* 34: ack; jmp 0 */
};

static int kvm_fd = -1, vm_fd = -1, vcpu_fd = -1;
static struct kvm_run *run;

static int fail(char *why, size_t len, const char *what) {
    snprintf(why, len, "%s: %s", what, strerror(errno));
    return -1;
}

int guest_init(char *why, size_t why_len) {
    kvm_fd = open("/dev/kvm", O_RDWR | O_CLOEXEC);
    if (kvm_fd < 0) return fail(why, why_len, "open /dev/kvm");
    vm_fd = ioctl(kvm_fd, KVM_CREATE_VM, 0);
    if (vm_fd < 0) return fail(why, why_len, "KVM_CREATE_VM");

    uint8_t *low = mmap(NULL, LOW_BYTES, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (low == MAP_FAILED) return fail(why, why_len, "mmap guest memory");
    /* Identity map of the first 4 GiB with 2 MiB pages, user-accessible. */
    uint64_t *pml4 = (uint64_t *)(low + PML4_AT), *pdpt = (uint64_t *)(low + PDPT_AT);
    pml4[0] = PDPT_AT | 7;
    for (int i = 0; i < 4; i++) {
        uint64_t *pd = (uint64_t *)(low + PD_AT + i * 0x1000);
        pdpt[i] = (uint64_t)(PD_AT + i * 0x1000) | 7;
        for (int j = 0; j < 512; j++) pd[j] = ((uint64_t)i << 30) | ((uint64_t)j << 21) | 0x87; /* P|RW|US|PS */
    }
    memcpy(low + CODE_AT, guest_code, sizeof guest_code);
    struct kvm_userspace_memory_region slot0 = {
        .slot = 0, .guest_phys_addr = 0, .memory_size = LOW_BYTES, .userspace_addr = (uint64_t)(uintptr_t)low};
    if (ioctl(vm_fd, KVM_SET_USER_MEMORY_REGION, &slot0) < 0) return fail(why, why_len, "memslot 0");

    vcpu_fd = ioctl(vm_fd, KVM_CREATE_VCPU, 0);
    if (vcpu_fd < 0) return fail(why, why_len, "KVM_CREATE_VCPU");
    int run_size = ioctl(kvm_fd, KVM_GET_VCPU_MMAP_SIZE, 0);
    if (run_size <= 0) return fail(why, why_len, "KVM_GET_VCPU_MMAP_SIZE");
    run = mmap(NULL, (size_t)run_size, PROT_READ | PROT_WRITE, MAP_SHARED, vcpu_fd, 0);
    if (run == MAP_FAILED) return fail(why, why_len, "mmap kvm_run");

    /* Long mode needs the CPUID KVM supports. */
    struct kvm_cpuid2 *cpuid = calloc(1, sizeof *cpuid + 256 * sizeof(struct kvm_cpuid_entry2));
    if (!cpuid) return fail(why, why_len, "calloc");
    cpuid->nent = 256;
    if (ioctl(kvm_fd, KVM_GET_SUPPORTED_CPUID, cpuid) < 0) return fail(why, why_len, "KVM_GET_SUPPORTED_CPUID");
    if (ioctl(vcpu_fd, KVM_SET_CPUID2, cpuid) < 0) return fail(why, why_len, "KVM_SET_CPUID2");
    free(cpuid);

    struct kvm_sregs sregs;
    if (ioctl(vcpu_fd, KVM_GET_SREGS, &sregs) < 0) return fail(why, why_len, "KVM_GET_SREGS");
    struct kvm_segment code = {.base = 0, .limit = 0xffffffff, .selector = 0x33, .type = 0xb, .present = 1, .dpl = 3, .s = 1, .l = 1, .g = 1};
    struct kvm_segment data = {.base = 0, .limit = 0xffffffff, .selector = 0x2b, .type = 3, .present = 1, .dpl = 3, .db = 1, .s = 1, .g = 1};
    sregs.cs = code;
    sregs.ds = sregs.es = sregs.fs = sregs.gs = sregs.ss = data;
    sregs.cr0 = 0x80050033;                     /* PG|AM|WP|NE|ET|MP|PE */
    sregs.cr3 = PML4_AT;
    sregs.cr4 = (1u << 5) | (1u << 9) | (1u << 16); /* PAE|OSFXSR|FSGSBASE */
    sregs.efer = (1u << 10) | (1u << 8) | 1u;       /* LMA|LME|SCE */
    if (ioctl(vcpu_fd, KVM_SET_SREGS, &sregs) < 0) return fail(why, why_len, "KVM_SET_SREGS");
    struct kvm_regs regs;
    memset(&regs, 0, sizeof regs);
    regs.rip = CODE_AT;
    regs.rflags = 0x3002; /* IOPL 3 */
    regs.rsp = STACK_TOP;
    if (ioctl(vcpu_fd, KVM_SET_REGS, &regs) < 0) return fail(why, why_len, "KVM_SET_REGS");
    return 0;
}

/* (Re)points memslot `id + 1` at [hva, hva + bytes): deleting it first if
 * it exists, as a VMM does when it moves guest memory. */
int guest_set_slot(int id, uint64_t hva, uint64_t bytes) {
    struct kvm_userspace_memory_region slot = {
        .slot = (uint32_t)id + 1, .guest_phys_addr = GUEST_SLOT_BASE + (uint64_t)id * GUEST_SLOT_STRIDE, .memory_size = 0};
    (void)ioctl(vm_fd, KVM_SET_USER_MEMORY_REGION, &slot); /* delete; fails harmlessly when absent */
    slot.memory_size = bytes;
    slot.userspace_addr = hva;
    return ioctl(vm_fd, KVM_SET_USER_MEMORY_REGION, &slot);
}

/* Back to the top of the guest's loop, after an access that faulted. */
static void guest_restart(void) {
    struct kvm_regs regs;
    if (ioctl(vcpu_fd, KVM_GET_REGS, &regs) == 0) {
        regs.rip = CODE_AT;
        ioctl(vcpu_fd, KVM_SET_REGS, &regs);
    }
}

/* Runs the guest through one command: answers its `in`s from
 * (command, address, value) and returns at its `out`. */
static int guest_run(uint32_t command, uint64_t gpa, uint32_t value, uint32_t *out) {
    for (int exits = 0; exits < 16; exits++) {
        if (ioctl(vcpu_fd, KVM_RUN, 0) < 0) {
            if (errno == EINTR) continue;
            guest_restart();
            return -1; /* EFAULT: KVM could not get the host page */
        }
        if (run->exit_reason != KVM_EXIT_IO) {
            guest_restart();
            return -1;
        }
        uint32_t *io = (uint32_t *)((uint8_t *)run + run->io.data_offset);
        if (run->io.direction == KVM_EXIT_IO_IN) {
            switch (run->io.port) {
            case PORT_COMMAND: *io = command; break;
            case PORT_ADDRESS: *io = (uint32_t)gpa; break;
            case PORT_VALUE: *io = value; break;
            default: *io = 0;
            }
            continue;
        }
        if (out) *out = *io;
        return 0;
    }
    guest_restart();
    return -1;
}

int guest_read(uint64_t gpa, uint32_t *value) { return guest_run(0, gpa, 0, value); }

int guest_write(uint64_t gpa, uint32_t value) { return guest_run(1, gpa, value, NULL); }
