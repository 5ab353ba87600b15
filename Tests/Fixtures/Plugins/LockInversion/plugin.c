/* Test fixture: the classic inversion with reclaim. The interval callback
 * takes the binding's device lock (under the mmap lock for munmap and
 * mprotect, from reclaim for vmscan), and access holds the same lock across
 * fault_range (which takes the mmap lock and may reclaim). */
#define FIXTURE_NAME "fixture-lock-inversion"
#define FAULT_UNDER_LOCK
#include "misuse_plugin.h"
