/*
 * mmulab Linux shim: <linux/string.h>: the C library's memcpy, memset,
 * strlen... under their kernel names, and strscpy.
 */
#ifndef MMULAB_LINUX_STRING_H
#define MMULAB_LINUX_STRING_H

#include <string.h>

#include <linux/errno.h>
#include <linux/types.h>

/* Copies at most size - 1 bytes and terminates; -E2BIG if it truncated. */
static inline ssize_t strscpy(char *dest, const char *src, size_t size) {
    if (size == 0) return -E2BIG;
    size_t length = strnlen(src, size);
    if (length == size) {
        memcpy(dest, src, size - 1);
        dest[size - 1] = '\0';
        return -E2BIG;
    }
    memcpy(dest, src, length + 1);
    return (ssize_t)length;
}

#endif /* MMULAB_LINUX_STRING_H */
