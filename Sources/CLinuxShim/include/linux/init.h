/*
 * mmulab Linux shim: <linux/init.h>: section markers, which mean nothing
 * outside a kernel image.
 */
#ifndef MMULAB_LINUX_INIT_H
#define MMULAB_LINUX_INIT_H

#define __init
#define __exit
#define __initdata
#define __read_mostly

#endif /* MMULAB_LINUX_INIT_H */
