/*
 * mmulab Linux shim: <linux/errno.h>. The error numbers are Linux's (they
 * are its user-space ABI), so a driver's -EBUSY is the number it expects.
 */
#ifndef MMULAB_LINUX_ERRNO_H
#define MMULAB_LINUX_ERRNO_H

#define EPERM 1
#define ENOENT 2
#define ESRCH 3
#define EINTR 4
#define EIO 5
#define ENXIO 6
#define E2BIG 7
#define EBADF 9
#define EAGAIN 11
#define ENOMEM 12
#define EACCES 13
#define EFAULT 14
#define EBUSY 16
#define EEXIST 17
#define ENODEV 19
#define EINVAL 22
#define ENOSPC 28
#define ERANGE 34
#define EDEADLK 35
#define ENOSYS 38
#define EOVERFLOW 75
#define EOPNOTSUPP 95
#define ETIMEDOUT 110
#define EHWPOISON 133
/* Kernel-internal numbers (never seen by user space). */
#define ERESTARTSYS 512
#define ENOTSUPP 524

#endif /* MMULAB_LINUX_ERRNO_H */
