/* Test fixture: makes device memory, moves the first four pages of each
 * binding into it, and leaves them there when it is destroyed. */
#define FIXTURE_NAME "fixture-leak-device-memory"
#define MISUSE_CREATE(d) (void)(d)->host->device_memory_create((d)->ctx, "leaky vram", 64, (uint64_t)(uintptr_t)(d), &(d)->vram, NULL);
#define MISUSE_ATTACH(d, b) { \
    uint64_t moved = 0; \
    if ((d)->vram) (void)(d)->host->migrate_to_device((d)->ctx, (d)->vram, (b)->desc.address_space, (b)->desc.start, 4 * PAGE, &moved, NULL); \
}
#include "misuse_plugin.h"
