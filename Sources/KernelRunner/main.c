/* mmulab-kernel-runner: the monitor. See runner.h for the two processes
 * and the README ("The differential harness") for the protocol.
 *
 * It needs root (PFNs in pagemap, tracefs, KSM's sysfs), /dev/kvm and
 * tracefs with KVM's tracepoints. When any is missing it prints
 * "unavailable REASON" and exits with status 3, so the caller can say
 * plainly why it skipped. */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/utsname.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "runner.h"

#define TRACEFS "/sys/kernel/tracing"
#define KSM "/sys/kernel/mm/ksm"
#define KHUGEPAGED "/sys/kernel/mm/transparent_hugepage/khugepaged"

static char instance[256];
static int trace_fd = -1;
static pid_t subject = -1, ksmd = -1;
static int to_subject = -1, from_subject = -1;
static int ksm_run_was = -1; /* the value of ksm/run we replaced, to restore */
static int made_mergeable;   /* the subject madvised MADV_MERGEABLE successfully */

static int unavailable(const char *fmt, const char *detail) {
    printf("unavailable ");
    printf(fmt, detail);
    printf("\n.\n");
    fflush(stdout);
    return 3;
}

static int write_file(const char *path, const char *text) {
    int fd = open(path, O_WRONLY | O_CLOEXEC);
    if (fd < 0) return -1;
    int rc = write_all(fd, text, strlen(text));
    close(fd);
    return rc;
}

static long read_number(const char *path) {
    char buf[64] = {0};
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return -1;
    ssize_t n = read(fd, buf, sizeof buf - 1);
    close(fd);
    return n > 0 ? strtol(buf, NULL, 10) : -1;
}

/* khugepaged's limits we replaced, to restore: while a runner runs, it may
 * collapse nothing with an empty, swapped or shared page in it, so it never
 * collapses a script's 2 MiB behind the script's back (it wakes as soon as
 * a mapping is madvised MADV_HUGEPAGE, and its invalidations come from its
 * own thread, which the trace does not follow). MADV_COLLAPSE ignores them. */
static const char *const khugepaged_limits[] = {"max_ptes_none", "max_ptes_swap", "max_ptes_shared"};
static long khugepaged_was[3] = {-1, -1, -1};

static void quiet_khugepaged(void) {
    for (int i = 0; i < 3; i++) {
        char path[128];
        snprintf(path, sizeof path, KHUGEPAGED "/%s", khugepaged_limits[i]);
        khugepaged_was[i] = read_number(path);
        if (khugepaged_was[i] > 0) write_file(path, "0");
    }
}

static void restore_khugepaged(void) {
    for (int i = 0; i < 3; i++) {
        if (khugepaged_was[i] <= 0) continue;
        char path[128], value[32];
        snprintf(path, sizeof path, KHUGEPAGED "/%s", khugepaged_limits[i]);
        snprintf(value, sizeof value, "%ld", khugepaged_was[i]);
        write_file(path, value);
        khugepaged_was[i] = -1;
    }
}

static void sleep_ms(int ms) {
    struct timespec t = {ms / 1000, (long)(ms % 1000) * 1000000L};
    while (nanosleep(&t, &t) < 0 && errno == EINTR) {}
}

/* The pid of the kernel thread `name` (ksmd), or -1. */
static pid_t find_kthread(const char *name) {
    DIR *proc = opendir("/proc");
    if (!proc) return -1;
    struct dirent *e;
    pid_t found = -1;
    while ((e = readdir(proc)) && found < 0) {
        char path[300], comm[64] = {0};
        if (e->d_name[0] < '0' || e->d_name[0] > '9') continue;
        snprintf(path, sizeof path, "/proc/%s/comm", e->d_name);
        int fd = open(path, O_RDONLY | O_CLOEXEC);
        if (fd < 0) continue;
        ssize_t n = read(fd, comm, sizeof comm - 1);
        close(fd);
        if (n > 0 && comm[n - 1] == '\n') comm[n - 1] = 0;
        if (!strcmp(comm, name)) found = (pid_t)atoi(e->d_name);
    }
    closedir(proc);
    return found;
}

/* Mounts tracefs if it is not, and checks KVM's events are there. */
static const char *ensure_tracefs(void) {
    struct stat st;
    if (stat(TRACEFS "/instances", &st) < 0) {
        if (mount("nodev", TRACEFS, "tracefs", 0, NULL) < 0) return "cannot mount tracefs on " TRACEFS;
    }
    if (stat(TRACEFS "/events/kvm/kvm_unmap_hva_range", &st) < 0) return "tracefs has no kvm:kvm_unmap_hva_range event";
    if (stat(TRACEFS "/events/kvm/kvm_age_hva", &st) < 0) return "tracefs has no kvm:kvm_age_hva event";
    return NULL;
}

/* Removes instances left by runners that died without cleaning up. */
static void remove_stale_instances(void) {
    DIR *dir = opendir(TRACEFS "/instances");
    if (!dir) return;
    struct dirent *e;
    while ((e = readdir(dir))) {
        int pid;
        if (sscanf(e->d_name, "mmulab-kdiff-%d", &pid) != 1) continue;
        if (kill(pid, 0) == 0 || errno != ESRCH) continue;
        char path[512];
        snprintf(path, sizeof path, TRACEFS "/instances/%s", e->d_name);
        rmdir(path);
    }
    closedir(dir);
}

static int instance_write(const char *relative, const char *text) {
    char path[512];
    snprintf(path, sizeof path, "%s/%s", instance, relative);
    return write_file(path, text);
}

/* A trace instance of our own (its own ring buffer), with KVM's two
 * notifier events filtered to the subject and ksmd. */
static const char *start_tracing(void) {
    snprintf(instance, sizeof instance, TRACEFS "/instances/mmulab-kdiff-%d", (int)getpid());
    if (mkdir(instance, 0700) < 0 && errno != EEXIST) return "cannot make a tracefs instance";
    char filter[128];
    if (ksmd > 0) snprintf(filter, sizeof filter, "common_pid == %d || common_pid == %d", (int)subject, (int)ksmd);
    else snprintf(filter, sizeof filter, "common_pid == %d", (int)subject);
    instance_write("buffer_size_kb", "512");
    if (instance_write("events/kvm/kvm_unmap_hva_range/filter", filter) < 0 ||
        instance_write("events/kvm/kvm_age_hva/filter", filter) < 0)
        return "cannot set the event filter";
    if (instance_write("events/kvm/kvm_unmap_hva_range/enable", "1") < 0 || instance_write("events/kvm/kvm_age_hva/enable", "1") < 0)
        return "cannot enable the KVM events";
    instance_write("tracing_on", "1");
    char path[512];
    snprintf(path, sizeof path, "%s/trace_pipe", instance);
    trace_fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC);
    if (trace_fd < 0) return "cannot open trace_pipe";
    return NULL;
}

static void stop_tracing(void) {
    if (!instance[0]) return;
    if (trace_fd >= 0) close(trace_fd);
    instance_write("events/kvm/kvm_unmap_hva_range/enable", "0");
    instance_write("events/kvm/kvm_age_hva/enable", "0");
    rmdir(instance);
    instance[0] = 0;
}

/* Prints "inval START END WHO" / "age START END WHO" for every event read
 * so far, in order; WHO is self (the subject) or ksmd. */
static void drain_trace(void) {
    static char carry[8192];
    static size_t carried;
    char buf[65536];
    for (;;) {
        ssize_t n = read(trace_fd, buf, sizeof buf);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) break;
        for (ssize_t i = 0; i < n; i++) {
            if (buf[i] != '\n') {
                if (carried + 1 < sizeof carry) carry[carried++] = buf[i];
                continue;
            }
            carry[carried] = 0;
            carried = 0;
            if (getenv("MMULAB_RUNNER_DEBUG")) fprintf(stderr, "trace: %s\n", carry);
            const char *kind = strstr(carry, "kvm_unmap_hva_range:") ? "inval" : strstr(carry, "kvm_age_hva:") ? "age" : NULL;
            const char *range = strstr(carry, ": 0x");
            if (!kind || !range) continue;
            /* the last ": 0x" holds the range: "... range: 0xSTART -- 0xEND" */
            for (const char *r = range; (r = strstr(r + 1, ": 0x"));) range = r;
            unsigned long long start, end;
            if (sscanf(range, ": %llx -- %llx", &start, &end) != 2) continue;
            /* "comm-PID   [cpu]": the pid is the number before the spaces before the first " [" */
            const char *bracket = strstr(carry, " [");
            int pid = -1;
            if (bracket) {
                const char *d = bracket;
                while (d > carry && d[-1] == ' ') d--;
                while (d > carry && d[-1] >= '0' && d[-1] <= '9') d--;
                pid = atoi(d);
            }
            printf("%s %llx %llx %s\n", kind, start, end, pid == subject ? "self" : pid == ksmd ? "ksmd" : "other");
        }
    }
}

/* Sends `command` to the subject and copies its reply block to stdout
 * (without the final "." when `keep_open`). */
static int relay(const char *command, int keep_open) {
    char line[MAX_PAGES * 20 + 64]; /* a pagemap line: 17 characters a page at most */
    if (fd_printf(to_subject, "%s\n", command) < 0) return -1;
    for (;;) {
        if (read_line(from_subject, line, sizeof line) != 1) return -1;
        if (!strcmp(line, ".")) break;
        printf("%s\n", line);
    }
    if (!keep_open) printf(".\n");
    return 0;
}

/* KSM: make sure ksmd runs, then wait for three more full scans: a page
 * merges on the second scan that finds its checksum unchanged. */
static void do_ksm(void) {
    /* With no mergeable memory here there is nothing for ksmd to merge (and
     * with no mergeable memory anywhere it sleeps and counts no scans). */
    if (!made_mergeable) {
        printf("ok\n.\n");
        return;
    }
    long run = read_number(KSM "/run");
    if (run < 0) {
        printf("error no KSM (%s)\n.\n", KSM);
        return;
    }
    if (run == 0) {
        if (write_file(KSM "/run", "1") < 0) {
            printf("error cannot start ksmd\n.\n");
            return;
        }
        if (ksm_run_was < 0) ksm_run_was = 0;
    }
    long first = read_number(KSM "/full_scans");
    for (int waited = 0; waited < 10000; waited += 5) {
        if (read_number(KSM "/full_scans") >= first + 3) {
            printf("ok\n.\n");
            return;
        }
        sleep_ms(5);
    }
    printf("error ksmd did not finish three scans in 10 s\n.\n");
}

static void cleanup(void) {
    if (subject > 0) {
        kill(subject, SIGKILL);
        waitpid(subject, NULL, 0);
        subject = -1;
    }
    stop_tracing();
    if (ksm_run_was == 0) write_file(KSM "/run", "0");
    restore_khugepaged();
}

static int numa_nodes(void) {
    int n = 0;
    for (int i = 0; i < 1024; i++) {
        char path[64];
        struct stat st;
        snprintf(path, sizeof path, "/sys/devices/system/node/node%d", i);
        if (stat(path, &st) == 0) n++;
    }
    return n > 0 ? n : 1;
}

static int swap_devices(void) {
    FILE *f = fopen("/proc/swaps", "r");
    if (!f) return 0;
    char line[512];
    int n = -1; /* the header */
    while (fgets(line, sizeof line, f)) n++;
    fclose(f);
    return n > 0 ? n : 0;
}

int main(int argc, char **argv) {
    (void)argc;
    (void)argv;
    /* Only our standard streams: a descriptor the starting process left
     * without close-on-exec (a pipe or socket through which it watches some
     * other child) would otherwise stay open for as long as we live. */
    closefrom(3);
    setvbuf(stdout, NULL, _IOFBF, 1 << 16);
    if (geteuid() != 0) return unavailable("%s", "not root (PFNs in pagemap, tracefs and KSM's sysfs need root)");
    if (access("/dev/kvm", R_OK | W_OK) < 0) return unavailable("/dev/kvm: %s", strerror(errno));
    const char *problem = ensure_tracefs();
    if (problem) return unavailable("%s", problem);

    /* One runner at a time on this machine: KSM's sysfs is global, and
     * ksmd's events are told apart from another runner's only by address. */
    int lock = open("/tmp/mmulab-kernel-runner.lock", O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (lock < 0 || flock(lock, LOCK_EX) < 0) return unavailable("lock: %s", strerror(errno));
    remove_stale_instances();
    ksmd = find_kthread("ksmd");
    quiet_khugepaged();

    int down[2], up[2];
    if (pipe2(down, O_CLOEXEC) < 0 || pipe2(up, O_CLOEXEC) < 0) return unavailable("pipe: %s", strerror(errno));
    fflush(stdout);
    subject = fork();
    if (subject < 0) return unavailable("fork: %s", strerror(errno));
    if (subject == 0) {
        close(down[1]);
        close(up[0]);
        close(lock);
        subject_main(down[0], up[1]);
    }
    close(down[0]);
    close(up[1]);
    to_subject = down[1];
    from_subject = up[0];
    signal(SIGPIPE, SIG_IGN);

    problem = start_tracing();
    if (problem) {
        cleanup();
        return unavailable("%s", problem);
    }
    char line[LINE_MAX_LEN];
    if (fd_printf(to_subject, "init\n") < 0 || read_line(from_subject, line, sizeof line) != 1) {
        cleanup();
        return unavailable("%s", "the subject process died at start");
    }
    char dot[8];
    read_line(from_subject, dot, sizeof dot);
    if (strncmp(line, "ok ", 3) != 0) {
        cleanup();
        printf("%s\n.\n", line); /* "unavailable ..." from the subject */
        fflush(stdout);
        return 3;
    }
    struct utsname uts;
    uname(&uts);
    printf("hello kernel=%s nodes=%d swap=%d %s ksmd=%s\n.\n", uts.release, numa_nodes(), swap_devices(), line + 3,
           ksmd > 0 ? "yes" : "no");
    fflush(stdout);

    int alive = 1;
    while (read_line(STDIN_FILENO, line, sizeof line) == 1) {
        if (!strcmp(line, "quit")) break;
        if (!strcmp(line, "ksm")) {
            do_ksm();
        } else if (!strcmp(line, "snap")) {
            drain_trace();
            if (alive && relay("snap", 1) < 0) alive = 0;
            printf(".\n");
        } else if (!alive) {
            printf("error the process has exited\n.\n");
        } else if (!strcmp(line, "exit")) {
            relay("exit", 0);
            waitpid(subject, NULL, 0);
            subject = -1;
            alive = 0;
        } else if (!strncmp(line, "mergeable ", 10)) {
            if (relay(line, 0) < 0) alive = 0;
            made_mergeable = 1; /* even if it failed: then ksmd merely finds nothing */
        } else if (relay(line, 0) < 0) {
            printf("error the subject process died\n.\n");
            alive = 0;
        }
        fflush(stdout);
    }
    cleanup();
    fflush(stdout);
    return 0;
}
