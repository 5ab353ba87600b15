/*
 * mmulab Linux shim: the XArray subset (<linux/xarray.h>): a radix tree of
 * 64-slot nodes, grown upwards as indices need more levels, with empty
 * nodes freed as entries are erased.
 *
 * The same tree serves the shim's own registries (MMULAB_XA_INTERNAL:
 * nodes from calloc, no lock of its own) and drivers' arrays (nodes from
 * kmalloc with the caller's gfp, every operation under xa_lock).
 */
#include <stdlib.h>
#include <string.h>

#include "internal.h"

#include <linux/slab.h>

#define XA_SHIFT 6
#define XA_SLOTS (1u << XA_SHIFT)
#define XA_MASK (XA_SLOTS - 1)
/* Enough levels of 6 bits for any unsigned long. */
#define XA_MAX_LEVELS ((int)((sizeof(unsigned long) * 8 + XA_SHIFT - 1) / XA_SHIFT))

struct mmulab_xa_node {
    struct mmulab_xa_node *parent;
    unsigned char level;  /* 0: a leaf, whose slots hold entries */
    unsigned char offset; /* in the parent */
    unsigned char count;  /* slots in use */
    u64 marks[XA_MARK_MAX + 1]; /* leaves only: a bit per slot */
    void *slots[XA_SLOTS];
};

static bool is_internal_array(const struct xarray *xa) { return (xa->xa_flags & MMULAB_XA_INTERNAL) != 0; }

/* How many levels an array needs to hold `index`. */
static unsigned int levels_for(unsigned long index) {
    unsigned int levels = 1;
    while (levels < (unsigned int)XA_MAX_LEVELS && (index >> (XA_SHIFT * levels)) != 0) levels++;
    return levels;
}

/* Whether an array of `levels` levels covers `index`. */
static bool covers(unsigned int levels, unsigned long index) {
    return levels >= (unsigned int)XA_MAX_LEVELS || (index >> (XA_SHIFT * levels)) == 0;
}

static unsigned int digit(unsigned long index, unsigned int level) {
    unsigned int shift = XA_SHIFT * level;
    return shift >= sizeof(unsigned long) * 8 ? 0 : (unsigned int)((index >> shift) & XA_MASK);
}

static void node_free(struct xarray *xa, struct mmulab_xa_node *node) {
    if (is_internal_array(xa)) {
        free(node);
    } else {
        mmulab_linux_kfree(node, "xarray.c", __LINE__);
    }
}

/* The leaf holding `index`, or NULL. */
static struct mmulab_xa_node *leaf_of(const struct xarray *xa, unsigned long index) {
    struct mmulab_xa_node *node = xa->mmulab_root;
    if (!node || !covers(xa->mmulab_levels, index)) return NULL;
    while (node && node->level > 0) node = node->slots[digit(index, node->level)];
    return node;
}

static void *load(const struct xarray *xa, unsigned long index) {
    struct mmulab_xa_node *leaf = leaf_of(xa, index);
    return leaf ? leaf->slots[digit(index, 0)] : NULL;
}

/* How many nodes storing at `index` would have to make. */
static unsigned int nodes_needed(const struct xarray *xa, unsigned long index) {
    unsigned int levels = xa->mmulab_levels;
    unsigned int target = levels_for(index);
    if (target < levels) target = levels;
    if (!xa->mmulab_root) return target;
    unsigned int needed = target - levels; /* new levels above the old root */
    /* Down the path from the top: above the old root, only slot 0 leads
     * into the existing tree. */
    for (unsigned int level = target - 1; level >= levels; level--) {
        if (digit(index, level) != 0) return needed + level;
        if (level == 0) return needed;
    }
    const struct mmulab_xa_node *node = xa->mmulab_root;
    while (node->level > 0) {
        const struct mmulab_xa_node *child = node->slots[digit(index, node->level)];
        if (!child) return needed + node->level;
        node = child;
    }
    return needed;
}

/* Spare nodes for one store. */
struct spares {
    struct mmulab_xa_node *nodes[XA_MAX_LEVELS * 2];
    unsigned int count;
};

static struct mmulab_xa_node *take(struct spares *spares, unsigned int level) {
    BUG_ON(spares->count == 0);
    struct mmulab_xa_node *node = spares->nodes[--spares->count];
    memset(node, 0, sizeof *node);
    node->level = (unsigned char)level;
    return node;
}

/* Stores (entry not NULL) with nodes_needed() spares at hand. */
static void *store(struct xarray *xa, unsigned long index, void *entry, struct spares *spares) {
    unsigned int target = levels_for(index);
    if (!xa->mmulab_root) {
        xa->mmulab_root = take(spares, target - 1);
        xa->mmulab_levels = target;
    }
    while (xa->mmulab_levels < target) {
        struct mmulab_xa_node *top = take(spares, xa->mmulab_levels);
        struct mmulab_xa_node *old = xa->mmulab_root;
        top->slots[0] = old;
        top->count = 1;
        old->parent = top;
        old->offset = 0;
        xa->mmulab_root = top;
        xa->mmulab_levels++;
    }
    struct mmulab_xa_node *node = xa->mmulab_root;
    while (node->level > 0) {
        unsigned int slot = digit(index, node->level);
        struct mmulab_xa_node *child = node->slots[slot];
        if (!child) {
            child = take(spares, node->level - 1u);
            child->parent = node;
            child->offset = (unsigned char)slot;
            node->slots[slot] = child;
            node->count++;
        }
        node = child;
    }
    unsigned int slot = digit(index, 0);
    void *old = node->slots[slot];
    node->slots[slot] = entry;
    if (!old) node->count++;
    return old;
}

/* Erases `index`: clears its marks, frees the nodes left empty. */
static void *erase(struct xarray *xa, unsigned long index) {
    struct mmulab_xa_node *node = leaf_of(xa, index);
    if (!node) return NULL;
    unsigned int slot = digit(index, 0);
    void *old = node->slots[slot];
    if (!old) return NULL;
    node->slots[slot] = NULL;
    for (unsigned int mark = 0; mark <= XA_MARK_MAX; mark++) node->marks[mark] &= ~(1ull << slot);
    node->count--;
    while (node->count == 0) {
        struct mmulab_xa_node *parent = node->parent;
        if (!parent) {
            xa->mmulab_root = NULL;
            xa->mmulab_levels = 0;
            node_free(xa, node);
            break;
        }
        parent->slots[node->offset] = NULL;
        parent->count--;
        node_free(xa, node);
        node = parent;
    }
    return old;
}

/* The first present entry (with mark `filter` unless XA_PRESENT) at an
 * index in [first, max] under `node`, whose slot 0 is at `base`. */
static void *find_in(const struct mmulab_xa_node *node, unsigned long base, unsigned long first, unsigned long max,
                     xa_mark_t filter, unsigned long *found) {
    unsigned int shift = XA_SHIFT * node->level;
    unsigned long span = shift >= sizeof(unsigned long) * 8 ? 0 : 1UL << shift; /* 0: the whole range */
    unsigned int slot = first > base ? digit(first, node->level) : 0;
    for (; slot < XA_SLOTS; slot++) {
        unsigned long start = base + (unsigned long)slot * span;
        if (span && slot > 0 && start < base) break; /* wrapped past the top */
        if (start > max) break;
        void *child = node->slots[slot];
        if (!child) continue;
        if (node->level == 0) {
            if (filter != XA_PRESENT && !(node->marks[filter] & (1ull << slot))) continue;
            *found = start;
            return child;
        }
        void *entry = find_in(child, start, first > start ? first : start, max, filter, found);
        if (entry) return entry;
    }
    return NULL;
}

static void *find(const struct xarray *xa, unsigned long *index, unsigned long max, xa_mark_t filter, bool after) {
    if (!xa->mmulab_root) return NULL;
    unsigned long first = *index;
    if (after) {
        if (first == ULONG_MAX) return NULL;
        first++;
    }
    if (first > max || !covers(xa->mmulab_levels, first)) return NULL;
    unsigned long found = 0;
    void *entry = find_in(xa->mmulab_root, 0, first, max, filter, &found);
    if (entry) *index = found;
    return entry;
}

static void destroy_nodes(struct xarray *xa, struct mmulab_xa_node *node) {
    if (!node) return;
    if (node->level > 0) {
        for (unsigned int slot = 0; slot < XA_SLOTS; slot++) destroy_nodes(xa, node->slots[slot]);
    }
    node_free(xa, node);
}

/* ---------------------------------------------------------------------- */
/* The shim's registries                                                   */
/* ---------------------------------------------------------------------- */

void shim_xa_init_internal(struct xarray *xa) {
    memset(xa, 0, sizeof *xa);
    xa->xa_flags = MMULAB_XA_INTERNAL;
}

void *shim_xa_load(struct xarray *xa, unsigned long index) { return load(xa, index); }

void *shim_xa_store(struct xarray *xa, unsigned long index, void *entry) {
    if (!entry) return erase(xa, index);
    struct spares spares = { .count = 0 };
    unsigned int needed = nodes_needed(xa, index);
    for (unsigned int i = 0; i < needed; i++) {
        struct mmulab_xa_node *node = calloc(1, sizeof *node);
        if (!node) {
            while (spares.count > 0) free(spares.nodes[--spares.count]);
            return xa_mk_err(-ENOMEM);
        }
        spares.nodes[spares.count++] = node;
    }
    void *old = store(xa, index, entry, &spares);
    BUG_ON(spares.count != 0);
    return old;
}

void *shim_xa_find(struct xarray *xa, unsigned long *index, unsigned long max, bool after) {
    return find(xa, index, max, XA_PRESENT, after);
}

/* ---------------------------------------------------------------------- */
/* The driver's API                                                        */
/* ---------------------------------------------------------------------- */

void mmulab_linux_xa_init_flags(struct xarray *xa, gfp_t flags, const char *name) {
    memset(xa, 0, sizeof *xa);
    xa->xa_flags = flags & ~MMULAB_XA_INTERNAL;
    mmulab_linux_spin_lock_init(&xa->xa_lock, name);
}

void xa_destroy(struct xarray *xa) {
    bool locked = !is_internal_array(xa);
    if (locked) xa_lock(xa);
    struct mmulab_xa_node *root = xa->mmulab_root;
    xa->mmulab_root = NULL;
    xa->mmulab_levels = 0;
    if (locked) xa_unlock(xa);
    destroy_nodes(xa, root);
}

bool xa_empty(const struct xarray *xa) { return READ_ONCE(xa->mmulab_root) == NULL; }

void *xa_load(struct xarray *xa, unsigned long index) {
    xa_lock(xa);
    void *entry = load(xa, index);
    xa_unlock(xa);
    return entry;
}

/* With xa_lock held: stores `entry` at `index` (erases, for NULL) if
 * `compare` is false or what is there is `expected`, and returns what was
 * there, or xa_mk_err(). To allocate nodes with a gfp that may sleep it
 * drops the lock and takes it again (as Linux's __xas_nomem does), then
 * looks again: the comparison holds for what it finally replaces. */
static void *store_locked(struct xarray *xa, unsigned long index, void *entry, gfp_t gfp, bool compare,
                          void *expected) {
    if (entry && xa_is_internal(entry)) {
        WARN_ON_ONCE(xa_is_internal(entry));
        return xa_mk_err(-EINVAL);
    }
    struct spares spares = { .count = 0 };
    void *result;
    for (;;) {
        void *present = load(xa, index);
        if (compare && present != expected) {
            result = present;
            break;
        }
        if (!entry) {
            result = erase(xa, index);
            break;
        }
        if (spares.count >= nodes_needed(xa, index)) {
            result = store(xa, index, entry, &spares);
            break;
        }
        bool blocking = gfpflags_allow_blocking(gfp);
        if (blocking) xa_unlock(xa);
        struct mmulab_xa_node *node = mmulab_linux_kmalloc(sizeof *node, gfp, "xarray.c", __LINE__);
        if (blocking) xa_lock(xa);
        if (!node) {
            result = xa_mk_err(-ENOMEM);
            break;
        }
        spares.nodes[spares.count++] = node;
    }
    while (spares.count > 0) node_free(xa, spares.nodes[--spares.count]);
    return result;
}

void *__xa_store(struct xarray *xa, unsigned long index, void *entry, gfp_t gfp) {
    return store_locked(xa, index, entry, gfp, false, NULL);
}

void *__xa_erase(struct xarray *xa, unsigned long index) { return erase(xa, index); }

void *xa_store(struct xarray *xa, unsigned long index, void *entry, gfp_t gfp) {
    xa_lock(xa);
    void *old = store_locked(xa, index, entry, gfp, false, NULL);
    xa_unlock(xa);
    return old;
}

void *xa_erase(struct xarray *xa, unsigned long index) {
    xa_lock(xa);
    void *old = erase(xa, index);
    xa_unlock(xa);
    return old;
}

int xa_insert(struct xarray *xa, unsigned long index, void *entry, gfp_t gfp) {
    /* Linux reserves the index for a NULL entry; the shim has no reserved
     * entries, so NULL only says whether the index is free. */
    xa_lock(xa);
    void *present = store_locked(xa, index, entry, gfp, true, NULL);
    xa_unlock(xa);
    if (xa_is_err(present)) return xa_err(present);
    return present ? -EBUSY : 0;
}

void *xa_cmpxchg(struct xarray *xa, unsigned long index, void *old, void *entry, gfp_t gfp) {
    xa_lock(xa);
    void *present = store_locked(xa, index, entry, gfp, true, old);
    xa_unlock(xa);
    return present;
}

void xa_set_mark(struct xarray *xa, unsigned long index, xa_mark_t mark) {
    if (WARN_ON(mark > XA_MARK_MAX)) return;
    xa_lock(xa);
    struct mmulab_xa_node *leaf = leaf_of(xa, index);
    unsigned int slot = digit(index, 0);
    if (leaf && leaf->slots[slot]) leaf->marks[mark] |= 1ull << slot;
    xa_unlock(xa);
}

void xa_clear_mark(struct xarray *xa, unsigned long index, xa_mark_t mark) {
    if (WARN_ON(mark > XA_MARK_MAX)) return;
    xa_lock(xa);
    struct mmulab_xa_node *leaf = leaf_of(xa, index);
    if (leaf) leaf->marks[mark] &= ~(1ull << digit(index, 0));
    xa_unlock(xa);
}

bool xa_get_mark(struct xarray *xa, unsigned long index, xa_mark_t mark) {
    if (WARN_ON(mark > XA_MARK_MAX)) return false;
    xa_lock(xa);
    struct mmulab_xa_node *leaf = leaf_of(xa, index);
    bool set = leaf && (leaf->marks[mark] & (1ull << digit(index, 0)));
    xa_unlock(xa);
    return set;
}

void *xa_find(struct xarray *xa, unsigned long *index, unsigned long max, xa_mark_t filter) {
    if (WARN_ON(filter != XA_PRESENT && filter > XA_MARK_MAX)) return NULL;
    xa_lock(xa);
    void *entry = find(xa, index, max, filter, false);
    xa_unlock(xa);
    return entry;
}

void *xa_find_after(struct xarray *xa, unsigned long *index, unsigned long max, xa_mark_t filter) {
    if (WARN_ON(filter != XA_PRESENT && filter > XA_MARK_MAX)) return NULL;
    xa_lock(xa);
    void *entry = find(xa, index, max, filter, true);
    xa_unlock(xa);
    return entry;
}
