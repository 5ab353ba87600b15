/* Test fixture: pins four pages at attach and never unpins them. */
#define FIXTURE_NAME "fixture-leak-pin"
#define PIN_PAGES 4
#define SKIP_UNPIN
#include "misuse_plugin.h"
