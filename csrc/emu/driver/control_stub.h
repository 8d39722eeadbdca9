// Stand-in for the emulated device's control API (csrc/emu/control.h) in host-twin builds
// (FASTRADIO_DRIVER_HOST_TWINS): the same declarations, doing nothing, so that the driver's run
// loop is one code path whichever implementation computes the outputs.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace fastradio::emu {

enum class Order : int { kForward = 0, kReverse = 1, kShuffle = 2 };
struct Schedule {
  Order blocks = Order::kForward;
  Order threads = Order::kForward;
  uint64_t seed = 0;
  bool greedy = false;
};

inline void set_schedule(const Schedule&) {}
inline void set_sm_count(int, int) {}
inline std::vector<std::string> take_errors() { return {}; }
inline int emulated_arch() { return 0; }

}  // namespace fastradio::emu
