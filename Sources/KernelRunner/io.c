/* Line I/O on raw file descriptors (no stdio buffers to duplicate at fork),
 * and CPU accesses that report a fault instead of dying of it. */
#define _GNU_SOURCE
#include <errno.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "runner.h"

int write_all(int fd, const char *buf, size_t len) {
    while (len > 0) {
        ssize_t n = write(fd, buf, len);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) return -1;
        buf += n;
        len -= (size_t)n;
    }
    return 0;
}

int fd_printf(int fd, const char *fmt, ...) {
    char buf[1024];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    if (n < 0) return -1;
    if ((size_t)n >= sizeof buf) n = sizeof buf - 1;
    return write_all(fd, buf, (size_t)n);
}

/* One byte at a time: the descriptors are pipes shared with no one else
 * and lines are short; reading ahead would steal the next reply. */
int read_line(int fd, char *buf, size_t size) {
    size_t used = 0;
    for (;;) {
        char c;
        ssize_t n = read(fd, &c, 1);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) return -1;
        if (n == 0) {
            buf[used] = 0;
            return used > 0 ? 1 : 0;
        }
        if (c == '\n') break;
        if (used + 1 < size) buf[used++] = c;
    }
    buf[used] = 0;
    return 1;
}

/* A CPU access that faults (SIGSEGV on a protection or missing mapping,
 * SIGBUS past the end of a file) jumps back here instead of killing the
 * process. Only the thread doing the access ever faults, and it is the
 * only thread. */
static sigjmp_buf fault_jump;
static volatile sig_atomic_t fault_armed;

static void on_fault(int sig) {
    if (!fault_armed) {
        signal(sig, SIG_DFL);
        raise(sig);
        return;
    }
    fault_armed = 0;
    siglongjmp(fault_jump, 1);
}

void access_install_handlers(void) {
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_fault;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGSEGV, &sa, NULL);
    sigaction(SIGBUS, &sa, NULL);
}

int cpu_read(volatile uint32_t *at, uint32_t *value) {
    if (sigsetjmp(fault_jump, 1)) return -1;
    fault_armed = 1;
    uint32_t v = *at;
    fault_armed = 0;
    *value = v;
    return 0;
}

int cpu_write(volatile uint32_t *at, uint32_t value) {
    if (sigsetjmp(fault_jump, 1)) return -1;
    fault_armed = 1;
    *at = value;
    fault_armed = 0;
    return 0;
}
