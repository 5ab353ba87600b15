/*
 * mmulab-kernel-runner: performs a kernel-diff script's operations on the
 * real kernel, in a real process with a KVM VM whose memslots cover its
 * mappings, and reports what a secondary MMU observes.
 *
 * Two processes:
 *   the monitor (main.c)  reads commands on stdin, owns the tracefs
 *                          instance, forwards memory commands to the subject
 *                          and prints every reply on stdout;
 *   the subject (subject.c) owns the mappings, the VM and its vCPU, the
 *                          forked child, and reads its own pagemap.
 * The split exists so that `exit` can be a real process exit
 * (`exit_mmap`) whose invalidations the monitor still collects.
 *
 * The protocol: one command per line on stdin; every reply is a block of
 * lines on stdout ended by a line holding only ".". Written by
 * Sources/KernelDiff/Primitive.swift, read by Sources/KernelDiff/KernelSide.swift.
 *
 *   (greeting)  hello kernel=R nodes=N swap=N zero-pfn=HEX ksmd=yes|no
 *               or: unavailable REASON       (then exit status 3)
 *   map ID anon|shared|file PAGES rw|r|none [huge|unadvised]
 *   read|gread|cread ID PAGE                 -> value 0xV | fault | error TEXT
 *   write|gwrite|cwrite ID PAGE HEXVALUE     -> ok | fault | error TEXT
 *   munmap|dontneed|free|pageout|mergeable|wrprotect|wrunprotect|collapse ID FIRST COUNT
 *   mprotect ID FIRST COUNT rw|r|none
 *   migrate ID FIRST COUNT NODE
 *   mremap ID | unregister ID | fork | cexit | ksm | exit -> ok | error TEXT
 *   snap  -> inval START END self|ksmd|other   (every kvm_unmap_hva_range since the last snap)
 *            age START END self|ksmd|other     (every kvm_age_hva)
 *            layout ID START PAGES             (while the subject lives)
 *            pm ID ENTRY...   cpm ID ENTRY...  (pagemap entries, hex; cpm: the child's)
 *            mc ID 1|0|-...                    (mincore of shared and file mappings)
 *   quit
 * IDs are the script's mapping indices; g* is the guest's vCPU, c* the
 * forked child.
 */
#ifndef MMULAB_KERNEL_RUNNER_H
#define MMULAB_KERNEL_RUNNER_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

enum { MAX_MAPPINGS = 64, MAX_PAGES = 512, LINE_MAX_LEN = 512 };

/* Guest-physical address of page `page` of mapping `id`: every mapping has
 * a memslot of its own, 16 MiB apart, from 1 GiB up (below the 4 GiB the
 * guest's identity page tables cover). */
#define GUEST_SLOT_BASE 0x40000000ull
#define GUEST_SLOT_STRIDE 0x1000000ull

/* Host virtual address of slot `n`: 1 GiB apart from a base far from
 * anything else in the process, so no two script mappings (and nothing
 * else) share a page-middle-directory table. */
#define HOST_SLOT_BASE 0x300000000000ull
#define HOST_SLOT_STRIDE 0x40000000ull

/* Writes all of `len` bytes to `fd` (retrying on EINTR); 0 or -1. */
int write_all(int fd, const char *buf, size_t len);
/* printf to a file descriptor through write_all. */
int fd_printf(int fd, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Reads one line (without its newline) into `buf`; 1 read, 0 end of file, -1 error. */
int read_line(int fd, char *buf, size_t size);

/* The subject's main loop: commands on `in`, replies on `out`. Never returns. */
void subject_main(int in, int out) __attribute__((noreturn));

/* The VM (guest.c). */
int guest_init(char *why, size_t why_len);
int guest_set_slot(int id, uint64_t hva, uint64_t bytes);
/* A vCPU access at guest-physical `gpa`: 0 and *value set, or -1 when the
 * access faulted (KVM_RUN failed with EFAULT: the host page could not be had). */
int guest_read(uint64_t gpa, uint32_t *value);
int guest_write(uint64_t gpa, uint32_t value);

/* CPU accesses that survive SIGSEGV/SIGBUS (access.c): 0, or -1 on a fault. */
void access_install_handlers(void);
int cpu_read(volatile uint32_t *at, uint32_t *value);
int cpu_write(volatile uint32_t *at, uint32_t value);

#endif
