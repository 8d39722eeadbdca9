// The emulated device's control API: csrc/emu/control.h in emulator builds, the no-op stand-in in
// host-twin builds (which never launch a kernel).
#pragma once

#if defined(FASTRADIO_DRIVER_HOST_TWINS)
#include "emu/driver/control_stub.h"
#else
#include <cuda_runtime_api.h>

#include "emu/control.h"
#endif
