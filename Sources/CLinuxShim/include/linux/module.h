/*
 * mmulab Linux shim: <linux/module.h>.
 *
 * MODULE_LICENSE and the other MODULE_* lines are metadata and compile to
 * nothing. module_init(fn) and module_exit(fn) name the module's init and
 * exit functions mmulab_linux_module_init and mmulab_linux_module_exit, so
 * the glue file can call them when the instance is made and destroyed (a
 * module's init usually registers a character device, which the lab does
 * not have: that registration is a missing symbol, see the README).
 * module_param is not provided.
 */
#ifndef MMULAB_LINUX_MODULE_H
#define MMULAB_LINUX_MODULE_H

#include <linux/init.h>
#include <linux/kernel.h>

#define MODULE_LICENSE(text)
#define MODULE_AUTHOR(text)
#define MODULE_DESCRIPTION(text)
#define MODULE_VERSION(text)
#define EXPORT_SYMBOL(symbol)
#define EXPORT_SYMBOL_GPL(symbol)
#define THIS_MODULE ((void *)0)

#define module_init(fn)                                                                                                \
    int mmulab_linux_module_init(void);                                                                                \
    int mmulab_linux_module_init(void) { return fn(); }
#define module_exit(fn)                                                                                                \
    void mmulab_linux_module_exit(void);                                                                               \
    void mmulab_linux_module_exit(void) { fn(); }

#endif /* MMULAB_LINUX_MODULE_H */
