#define _GNU_SOURCE
#include <pthread.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>
#include "CLabSyncShims.h"

__thread void *mmulab_thread_context = NULL;

int32_t mmulab_gettid(void) {
    return (int32_t)syscall(SYS_gettid);
}

void mmulab_set_thread_name(const char *name) {
    char truncated[16];
    strncpy(truncated, name, sizeof truncated - 1);
    truncated[sizeof truncated - 1] = '\0';
    pthread_setname_np(pthread_self(), truncated);
}
