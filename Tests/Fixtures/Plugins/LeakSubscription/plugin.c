/* Test fixture: subscribes to the whole address space at attach and never unsubscribes. */
#define FIXTURE_NAME "fixture-leak-subscription"
#define SUBSCRIBE
#include "misuse_plugin.h"
