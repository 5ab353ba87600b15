/*
 * mmulab Linux shim: <linux/interval_tree.h>: the node an interval
 * notifier carries, so a driver can read the interval it watches
 * (start and last, inclusive). The tree itself is the host's.
 */
#ifndef MMULAB_LINUX_INTERVAL_TREE_H
#define MMULAB_LINUX_INTERVAL_TREE_H

struct interval_tree_node {
    unsigned long start;
    unsigned long last;
};

#endif /* MMULAB_LINUX_INTERVAL_TREE_H */
