// CDevicePluginABI is a header-only contract; SwiftPM needs one source file
// to build the target. Nothing here.
#include "mmulab_device_plugin.h"
