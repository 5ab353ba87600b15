/*
 * mmulab Linux shim: <linux/pagemap.h>: the folio lock as far as a driver
 * meets it.
 *
 * make_device_exclusive returns its page locked (<linux/rmap.h>):
 * folio_unlock (unlock_page) lets it go; unlocking a folio that is not
 * locked is reported as a BUG. Taking a folio's lock (folio_lock,
 * lock_page, folio_trylock) is not provided, so a driver that does fails
 * to link: the lab's page locks are the primary's own.
 */
#ifndef MMULAB_LINUX_PAGEMAP_H
#define MMULAB_LINUX_PAGEMAP_H

#include <linux/mm.h>

void folio_unlock(struct folio *folio);
void unlock_page(struct page *page);

/* Not provided (see above): declared so that using them is a link error. */
void folio_lock(struct folio *folio);
void lock_page(struct page *page);
bool folio_trylock(struct folio *folio);

#endif /* MMULAB_LINUX_PAGEMAP_H */
