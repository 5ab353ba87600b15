/* The subject: the process whose address space the script changes. It owns
 * the script's mappings (each at a fixed address of its own), the KVM VM
 * whose memslots cover them, and the child it forks; it reads its own
 * (and the child's) pagemap. Commands and replies: see runner.h. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <linux/userfaultfd.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "runner.h"

#ifndef MADV_PAGEOUT
#define MADV_PAGEOUT 21
#endif
#ifndef MADV_COLLAPSE
#define MADV_COLLAPSE 25
#endif
#ifndef MAP_FIXED_NOREPLACE
#define MAP_FIXED_NOREPLACE 0x100000
#endif
#ifndef MPOL_MF_MOVE
#define MPOL_MF_MOVE (1 << 1)
#endif

enum kind { ANON, SHARED, FILE_BACKED };

struct mapping {
    int used;
    enum kind kind;
    uint64_t start;
    int pages;
    int uffd_registered; /* registered for userfaultfd write-protect */
};

/* The process's userfaultfd, made on the first wrprotect (no handler
 * thread: a script never writes a page while it is write-protected). */
static int uffd = -1;

/* Registers mapping `m` for write-protect faults, making the userfaultfd
 * first if needed; 0 or -1 with errno. */
static int uffd_register(struct mapping *m) {
    if (m->uffd_registered) return 0;
    if (uffd < 0) {
        uffd = (int)syscall(SYS_userfaultfd, O_CLOEXEC | O_NONBLOCK);
        if (uffd < 0) return -1;
        struct uffdio_api api = {.api = UFFD_API, .features = 0};
        if (ioctl(uffd, UFFDIO_API, &api) < 0) return -1;
    }
    struct uffdio_register reg = {.range = {.start = m->start, .len = (uint64_t)m->pages * 4096}, .mode = UFFDIO_REGISTER_MODE_WP};
    if (ioctl(uffd, UFFDIO_REGISTER, &reg) < 0) return -1;
    m->uffd_registered = 1;
    return 0;
}

static struct mapping maps[MAX_MAPPINGS];
static int next_slot;
static int reply_fd;
static pid_t child_pid;
static int child_in = -1, child_out = -1; /* our ends of the child's pipes */

static void reply(const char *line) { fd_printf(reply_fd, "%s\n.\n", line); }

static void reply_errno(const char *what) {
    char buf[256];
    snprintf(buf, sizeof buf, "error %s: %s", what, strerror(errno));
    reply(buf);
}

static void reply_value(int faulted, uint32_t value) {
    char buf[64];
    if (faulted) snprintf(buf, sizeof buf, "fault");
    else snprintf(buf, sizeof buf, "value 0x%x", value);
    reply(buf);
}

static int prot_of(const char *name) {
    if (!strcmp(name, "rw")) return PROT_READ | PROT_WRITE;
    if (!strcmp(name, "r")) return PROT_READ;
    if (!strcmp(name, "none")) return PROT_NONE;
    return -1;
}

static uint64_t next_address(void) { return HOST_SLOT_BASE + (uint64_t)(next_slot++) * HOST_SLOT_STRIDE; }

/* A mapping id and page range from a command, checked. */
static struct mapping *lookup(int id, int first, int count) {
    if (id < 0 || id >= MAX_MAPPINGS || !maps[id].used) return NULL;
    if (first < 0 || count < 1 || first + count > maps[id].pages) return NULL;
    return &maps[id];
}

static void *page_at(struct mapping *m, int page) { return (void *)(uintptr_t)(m->start + (uint64_t)page * 4096); }

static uint64_t gpa_of(int id, int page) { return GUEST_SLOT_BASE + (uint64_t)id * GUEST_SLOT_STRIDE + (uint64_t)page * 4096; }

/* The file a `file` mapping maps: a new file of `pages` pages (a hole,
 * read as zeroes) on the disk file system of $TMPDIR or /tmp, unlinked at
 * once so nothing is left behind. */
static int make_file(int pages) {
    const char *dir = getenv("TMPDIR");
    if (!dir || !*dir) dir = "/tmp";
    char path[512];
    snprintf(path, sizeof path, "%s/mmulab-kdiff-XXXXXX", dir);
    int fd = mkstemp(path);
    if (fd < 0) return -1;
    unlink(path);
    if (ftruncate(fd, (off_t)pages * 4096) < 0) {
        close(fd);
        return -1;
    }
    return fd;
}

/* `advice`: 0 MADV_NOHUGEPAGE, 1 MADV_HUGEPAGE, 2 neither. */
static void do_map(int id, const char *kind, int pages, const char *prot_name, int advice) {
    int prot = prot_of(prot_name);
    if (id < 0 || id >= MAX_MAPPINGS || maps[id].used || pages < 1 || pages > MAX_PAGES || prot < 0) {
        reply("error bad map command");
        return;
    }
    struct mapping *m = &maps[id];
    uint64_t at = next_address();
    int flags = MAP_FIXED_NOREPLACE, fd = -1;
    if (!strcmp(kind, "anon")) {
        m->kind = ANON;
        flags |= MAP_PRIVATE | MAP_ANONYMOUS;
    } else if (!strcmp(kind, "shared")) {
        m->kind = SHARED;
        flags |= MAP_SHARED | MAP_ANONYMOUS;
    } else if (!strcmp(kind, "file")) {
        m->kind = FILE_BACKED;
        flags |= MAP_SHARED;
        fd = make_file(pages);
        if (fd < 0) {
            reply_errno("file");
            return;
        }
    } else {
        reply("error bad mapping kind");
        return;
    }
    void *p = mmap((void *)(uintptr_t)at, (size_t)pages * 4096, prot, flags, fd, 0);
    if (fd >= 0) close(fd);
    if (p == MAP_FAILED) {
        reply_errno("mmap");
        return;
    }
    /* Transparent huge pages only where the script asks (MADV_HUGEPAGE;
     * the machine's setting is madvise); none elsewhere, as in the model.
     * No readahead on the file: the model reads a file page only when it
     * is faulted. */
    if (advice != 2) madvise(p, (size_t)pages * 4096, advice == 1 ? MADV_HUGEPAGE : MADV_NOHUGEPAGE);
    if (m->kind == FILE_BACKED) madvise(p, (size_t)pages * 4096, MADV_RANDOM);
    m->used = 1;
    m->start = at;
    m->pages = pages;
    m->uffd_registered = 0;
    if (guest_set_slot(id, at, (uint64_t)pages * 4096) < 0) {
        reply_errno("memslot");
        return;
    }
    reply("ok");
}

static void do_mremap(int id) {
    struct mapping *m = lookup(id, 0, 1);
    if (!m) {
        reply("error bad mremap command");
        return;
    }
    uint64_t to = next_address();
    size_t len = (size_t)m->pages * 4096;
    void *p = mremap(page_at(m, 0), len, len, MREMAP_MAYMOVE | MREMAP_FIXED, (void *)(uintptr_t)to);
    if (p == MAP_FAILED) {
        reply_errno("mremap");
        return;
    }
    m->start = to;
    /* A VMM moves the memslot with the memory. */
    if (guest_set_slot(id, to, len) < 0) {
        reply_errno("memslot");
        return;
    }
    reply("ok");
}

/* UFFDIO_UNREGISTER of mapping `id`, if it was registered. */
static void do_unregister(int id) {
    if (id < 0 || id >= MAX_MAPPINGS || !maps[id].used) {
        reply("error bad mapping");
        return;
    }
    struct mapping *m = &maps[id];
    if (m->uffd_registered) {
        struct uffdio_range range = {.start = m->start, .len = (uint64_t)m->pages * 4096};
        if (ioctl(uffd, UFFDIO_UNREGISTER, &range) < 0) {
            reply_errno("unregister");
            return;
        }
        m->uffd_registered = 0;
    }
    reply("ok");
}

static void do_range(const char *op, int id, int first, int count, const char *prot_name) {
    struct mapping *m = lookup(id, first, count);
    if (!m) {
        reply("error bad range");
        return;
    }
    void *at = page_at(m, first);
    size_t len = (size_t)count * 4096;
    int rc;
    if (!strcmp(op, "munmap")) rc = munmap(at, len);
    else if (!strcmp(op, "dontneed")) rc = madvise(at, len, MADV_DONTNEED);
    else if (!strcmp(op, "free")) rc = madvise(at, len, MADV_FREE);
    else if (!strcmp(op, "collapse")) rc = madvise(at, len, MADV_COLLAPSE);
    else if (!strcmp(op, "wrprotect") || !strcmp(op, "wrunprotect")) {
        rc = uffd_register(m);
        if (rc == 0) {
            struct uffdio_writeprotect wp = {
                .range = {.start = (uint64_t)(uintptr_t)at, .len = len}, .mode = !strcmp(op, "wrprotect") ? UFFDIO_WRITEPROTECT_MODE_WP : 0};
            rc = ioctl(uffd, UFFDIO_WRITEPROTECT, &wp);
        }
    }
    else if (!strcmp(op, "pageout")) rc = madvise(at, len, MADV_PAGEOUT);
    else if (!strcmp(op, "mergeable")) rc = madvise(at, len, MADV_MERGEABLE);
    else if (!strcmp(op, "mprotect")) {
        int prot = prot_of(prot_name ? prot_name : "");
        if (prot < 0) {
            reply("error bad protection");
            return;
        }
        rc = mprotect(at, len, prot);
    } else {
        reply("error unknown range operation");
        return;
    }
    if (rc < 0) reply_errno(op);
    else reply("ok");
}

static void do_migrate(int id, int first, int count, int node) {
    struct mapping *m = lookup(id, first, count);
    if (!m) {
        reply("error bad range");
        return;
    }
    void *pages[MAX_PAGES];
    int nodes[MAX_PAGES], status[MAX_PAGES];
    for (int i = 0; i < count; i++) {
        pages[i] = page_at(m, first + i);
        nodes[i] = node;
    }
    if (syscall(SYS_move_pages, 0, (unsigned long)count, pages, nodes, status, MPOL_MF_MOVE) < 0) reply_errno("move_pages");
    else reply("ok");
}

/* The child after `fork`: it obeys "r ADDR", "w ADDR VALUE" and "x" (exit)
 * on its pipe until told to exit. */
static void child_main(int in, int out) {
    char line[LINE_MAX_LEN];
    while (read_line(in, line, sizeof line) == 1) {
        unsigned long long addr;
        unsigned value;
        uint32_t got = 0;
        if (sscanf(line, "r %llx", &addr) == 1) {
            int f = cpu_read((volatile uint32_t *)(uintptr_t)addr, &got);
            fd_printf(out, f ? "fault\n" : "value 0x%x\n", got);
        } else if (sscanf(line, "w %llx %x", &addr, &value) == 2) {
            int f = cpu_write((volatile uint32_t *)(uintptr_t)addr, value);
            fd_printf(out, f ? "fault\n" : "ok\n");
        } else if (!strcmp(line, "x")) {
            fd_printf(out, "ok\n");
            exit(0); /* a real exit: exit_mmap tears the child's copy down */
        } else {
            fd_printf(out, "error child: bad command\n");
        }
    }
    exit(0);
}

static void do_fork(void) {
    if (child_pid > 0) {
        reply("error a child is already running");
        return;
    }
    int to_child[2], from_child[2];
    if (pipe2(to_child, O_CLOEXEC) < 0 || pipe2(from_child, O_CLOEXEC) < 0) {
        reply_errno("pipe");
        return;
    }
    pid_t pid = fork();
    if (pid < 0) {
        reply_errno("fork");
        return;
    }
    if (pid == 0) {
        close(to_child[1]);
        close(from_child[0]);
        child_main(to_child[0], from_child[1]);
    }
    close(to_child[0]);
    close(from_child[1]);
    child_pid = pid;
    child_in = to_child[1];
    child_out = from_child[0];
    reply("ok");
}

/* Sends one command to the child and relays its one-line reply. */
static void to_child(const char *command) {
    char line[LINE_MAX_LEN];
    if (child_pid <= 0) {
        reply("error no child");
        return;
    }
    if (fd_printf(child_in, "%s\n", command) < 0 || read_line(child_out, line, sizeof line) != 1) {
        reply("error the child does not answer");
        return;
    }
    reply(line);
}

static void do_child_exit(void) {
    to_child("x");
    if (child_pid > 0) {
        waitpid(child_pid, NULL, 0);
        close(child_in);
        close(child_out);
        child_pid = 0;
    }
}

/* The pagemap entries of every page of every mapping, one line per mapping. */
static void snap_pagemap(const char *tag, pid_t pid) {
    char path[64];
    if (pid) snprintf(path, sizeof path, "/proc/%d/pagemap", (int)pid);
    else snprintf(path, sizeof path, "/proc/self/pagemap");
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return;
    for (int id = 0; id < MAX_MAPPINGS; id++) {
        if (!maps[id].used) continue;
        uint64_t entries[MAX_PAGES];
        ssize_t want = (ssize_t)maps[id].pages * 8;
        if (pread(fd, entries, (size_t)want, (off_t)(maps[id].start / 4096 * 8)) != want) continue;
        char line[MAX_PAGES * 18 + 32];
        int used = snprintf(line, sizeof line, "%s %d", tag, id);
        for (int p = 0; p < maps[id].pages; p++) used += snprintf(line + used, sizeof line - (size_t)used, " %llx", (unsigned long long)entries[p]);
        line[used++] = '\n';
        write_all(reply_fd, line, (size_t)used); /* longer than fd_printf's buffer */
    }
    close(fd);
}

/* Page-cache residency (mincore) of shared and file mappings; "-" for a
 * page that is no longer mapped. */
static void snap_mincore(void) {
    for (int id = 0; id < MAX_MAPPINGS; id++) {
        if (!maps[id].used || maps[id].kind == ANON) continue;
        char line[MAX_PAGES * 2 + 32];
        int used = snprintf(line, sizeof line, "mc %d", id);
        for (int p = 0; p < maps[id].pages; p++) {
            unsigned char v = 0;
            const char *s = mincore(page_at(&maps[id], p), 4096, &v) < 0 ? "-" : (v & 1) ? "1" : "0";
            used += snprintf(line + used, sizeof line - (size_t)used, " %s", s);
        }
        line[used++] = '\n';
        write_all(reply_fd, line, (size_t)used);
    }
}

static void do_snap(void) {
    for (int id = 0; id < MAX_MAPPINGS; id++)
        if (maps[id].used) fd_printf(reply_fd, "layout %d %llx %d\n", id, (unsigned long long)maps[id].start, maps[id].pages);
    snap_pagemap("pm", 0);
    if (child_pid > 0) snap_pagemap("cpm", child_pid);
    snap_mincore();
    fd_printf(reply_fd, ".\n");
}

/* The PFN of the shared zero page: what a read of untouched private
 * anonymous memory maps. 0 when PFNs are hidden (not CAP_SYS_ADMIN). */
static uint64_t zero_pfn(void) {
    volatile uint32_t *p = mmap(NULL, 4096, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) return 0;
    (void)*p;
    uint64_t entry = 0;
    int fd = open("/proc/self/pagemap", O_RDONLY | O_CLOEXEC);
    if (fd >= 0) {
        if (pread(fd, &entry, 8, (off_t)((uintptr_t)p / 4096 * 8)) != 8) entry = 0;
        close(fd);
    }
    munmap((void *)p, 4096);
    return (entry >> 63) ? (entry & ((1ull << 55) - 1)) : 0;
}

static void do_init(void) {
    char why[256];
    access_install_handlers();
    /* One CPU for the subject (and its child): pages faulted in wait in a
     * per-CPU batch before they reach the LRU, and MADV_PAGEOUT drains only
     * the local CPU's batch (lru_add_drain); a page left in another CPU's
     * batch cannot be isolated and would be skipped, at random. */
    int cpu = sched_getcpu();
    if (cpu >= 0) {
        cpu_set_t one;
        CPU_ZERO(&one);
        CPU_SET(cpu, &one);
        sched_setaffinity(0, sizeof one, &one);
    }
    uint64_t zero = zero_pfn();
    if (!zero) {
        reply("unavailable /proc/self/pagemap hides PFNs (needs CAP_SYS_ADMIN)");
        return;
    }
    if (guest_init(why, sizeof why) < 0) {
        char line[300];
        snprintf(line, sizeof line, "unavailable KVM guest: %s", why);
        reply(line);
        return;
    }
    char line[64];
    snprintf(line, sizeof line, "ok zero-pfn=%llx", (unsigned long long)zero);
    reply(line);
}

void subject_main(int in, int out) {
    char line[LINE_MAX_LEN], a[32], b[32], c[32];
    reply_fd = out;
    while (read_line(in, line, sizeof line) == 1) {
        int id, x, y, z;
        unsigned value;
        uint32_t got = 0;
        if (!strcmp(line, "init")) do_init();
        else if (sscanf(line, "map %d %31s %d %31s %31s", &id, a, &x, b, c) == 5)
            do_map(id, a, x, b, !strcmp(c, "huge") ? 1 : !strcmp(c, "unadvised") ? 2 : 0);
        else if (sscanf(line, "map %d %31s %d %31s", &id, a, &x, b) == 4) do_map(id, a, x, b, 0);
        else if (sscanf(line, "read %d %d", &id, &x) == 2) {
            struct mapping *m = lookup(id, x, 1);
            if (!m) reply("error bad page");
            else reply_value(cpu_read(page_at(m, x), &got) < 0, got);
        } else if (sscanf(line, "write %d %d %x", &id, &x, &value) == 3) {
            struct mapping *m = lookup(id, x, 1);
            if (!m) reply("error bad page");
            else reply(cpu_write(page_at(m, x), value) < 0 ? "fault" : "ok");
        } else if (sscanf(line, "gread %d %d", &id, &x) == 2) {
            if (!lookup(id, x, 1)) reply("error bad page");
            else reply_value(guest_read(gpa_of(id, x), &got) < 0, got);
        } else if (sscanf(line, "gwrite %d %d %x", &id, &x, &value) == 3) {
            if (!lookup(id, x, 1)) reply("error bad page");
            else reply(guest_write(gpa_of(id, x), value) < 0 ? "fault" : "ok");
        } else if (sscanf(line, "cread %d %d", &id, &x) == 2) {
            struct mapping *m = lookup(id, x, 1);
            char command[64];
            snprintf(command, sizeof command, "r %llx", m ? (unsigned long long)(uintptr_t)page_at(m, x) : 0ull);
            if (!m) reply("error bad page");
            else to_child(command);
        } else if (sscanf(line, "cwrite %d %d %x", &id, &x, &value) == 3) {
            struct mapping *m = lookup(id, x, 1);
            char command[80];
            snprintf(command, sizeof command, "w %llx %x", m ? (unsigned long long)(uintptr_t)page_at(m, x) : 0ull, value);
            if (!m) reply("error bad page");
            else to_child(command);
        } else if (sscanf(line, "mremap %d", &id) == 1) do_mremap(id);
        else if (sscanf(line, "unregister %d", &id) == 1) do_unregister(id);
        else if (sscanf(line, "mprotect %d %d %d %31s", &id, &x, &y, a) == 4) do_range("mprotect", id, x, y, a);
        else if (sscanf(line, "migrate %d %d %d %d", &id, &x, &y, &z) == 4) do_migrate(id, x, y, z);
        else if (sscanf(line, "%31s %d %d %d", a, &id, &x, &y) == 4) do_range(a, id, x, y, NULL);
        else if (!strcmp(line, "fork")) do_fork();
        else if (!strcmp(line, "cexit")) do_child_exit();
        else if (!strcmp(line, "snap")) do_snap();
        else if (!strcmp(line, "exit")) {
            if (child_pid > 0) do_child_exit(); /* not expected: the script checker refuses it */
            else reply("ok");
            exit(0); /* the real thing: exit_mmap, with the VM still open */
        } else reply("error unknown command");
    }
    exit(0);
}
