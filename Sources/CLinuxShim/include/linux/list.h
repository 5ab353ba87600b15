/*
 * mmulab Linux shim: <linux/list.h>: the circular doubly linked list with
 * its kernel names (a pure data structure: no locking, as in Linux).
 */
#ifndef MMULAB_LINUX_LIST_H
#define MMULAB_LINUX_LIST_H

#include <linux/kernel.h>

struct list_head {
    struct list_head *next, *prev;
};

#define LIST_HEAD_INIT(name) { &(name), &(name) }
#define LIST_HEAD(name) struct list_head name = LIST_HEAD_INIT(name)

static inline void INIT_LIST_HEAD(struct list_head *list) {
    WRITE_ONCE(list->next, list);
    list->prev = list;
}

static inline void __mmulab_list_add(struct list_head *entry, struct list_head *prev, struct list_head *next) {
    next->prev = entry;
    entry->next = next;
    entry->prev = prev;
    WRITE_ONCE(prev->next, entry);
}

/* After `head`: a stack. */
static inline void list_add(struct list_head *entry, struct list_head *head) { __mmulab_list_add(entry, head, head->next); }
/* Before `head`: a queue. */
static inline void list_add_tail(struct list_head *entry, struct list_head *head) {
    __mmulab_list_add(entry, head->prev, head);
}

static inline void __mmulab_list_unlink(struct list_head *entry) {
    entry->next->prev = entry->prev;
    WRITE_ONCE(entry->prev->next, entry->next);
}

/* Unlinks `entry` and poisons it, so a second list_del is caught. */
static inline void list_del(struct list_head *entry) {
    __mmulab_list_unlink(entry);
    entry->next = (struct list_head *)0x100;
    entry->prev = (struct list_head *)0x122;
}

static inline void list_del_init(struct list_head *entry) {
    __mmulab_list_unlink(entry);
    INIT_LIST_HEAD(entry);
}

static inline void list_move_tail(struct list_head *entry, struct list_head *head) {
    __mmulab_list_unlink(entry);
    list_add_tail(entry, head);
}

static inline int list_empty(const struct list_head *head) { return READ_ONCE(head->next) == head; }

#define list_entry(ptr, type, member) container_of(ptr, type, member)
#define list_first_entry(ptr, type, member) list_entry((ptr)->next, type, member)
#define list_first_entry_or_null(ptr, type, member) (list_empty(ptr) ? NULL : list_first_entry(ptr, type, member))
#define list_next_entry(pos, member) list_entry((pos)->member.next, __typeof__(*(pos)), member)

#define list_for_each(pos, head) for (pos = (head)->next; pos != (head); pos = pos->next)
#define list_for_each_entry(pos, head, member)                                                                         \
    for (pos = list_first_entry(head, __typeof__(*pos), member); &pos->member != (head);                               \
         pos = list_next_entry(pos, member))
#define list_for_each_entry_safe(pos, n, head, member)                                                                 \
    for (pos = list_first_entry(head, __typeof__(*pos), member), n = list_next_entry(pos, member);                     \
         &pos->member != (head); pos = n, n = list_next_entry(n, member))

#endif /* MMULAB_LINUX_LIST_H */
