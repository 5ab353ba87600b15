// libdrm, found through pkg-config (libdrm-dev): device enumeration for the GPU plugin.
#include <xf86drm.h>
