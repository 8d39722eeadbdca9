// What a host program (the emulator's test driver, the emulated Python module) may set and read
// on the emulated device, beyond the CUDA runtime API of include/cuda_runtime_api.h.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace fastradio {
namespace emu {

// Order in which a launch runs its blocks (one at a time) and in which the scheduler resumes the
// runnable threads of a block. Results must not depend on either: the test driver runs each case
// under several schedules and requires bitwise-identical outputs (inter-block dependencies, and
// intra-block ones the barriers do not order, show up as differences).
enum class Order : int { kForward = 0, kReverse = 1, kShuffle = 2 };

struct Schedule {
  Order blocks = Order::kForward;
  Order threads = Order::kForward;
  uint64_t seed = 0;  // for kShuffle
  // false: each round resumes every runnable thread once (the warps of a block advance about one
  // collective per round, in step). true: always the first runnable thread of the order, so the
  // first warp runs until it waits at a barrier before the next one starts: the most skewed
  // interleaving, where a missing barrier lets a warp overwrite data others have not read yet.
  bool greedy = false;
};

void set_schedule(const Schedule& s);
Schedule schedule();

// cudaDevAttrMultiProcessorCount of emulated device `device` (0 .. kDevices-1). Launchers cache it,
// so set it before the first launch on that device. Defaults: device 0 has 108 SMs (an A100),
// device 1 has 2 (so that grid-size heuristics take their "few SMs" branch), the rest 108.
inline constexpr int kDevices = 4;
void set_sm_count(int device, int sms);

// The arch the kernels were compiled for, e.g. 80 (FASTRADIO_EMU_ARCH).
int emulated_arch();

// Launch and execution errors recorded since the last call (each also printed to stderr when it
// happens): invalid launch configurations, deadlocks, divergent barriers and warp collectives,
// threads that exit while others wait for them, __trap(), misaligned or non-shared ldmatrix and
// cp.async addresses, cp.async copies never waited for, shared memory over the arch's limits.
std::vector<std::string> take_errors();

// Why the emulator's cuTensorMapEncodeTiled last refused a tensor map ("" after a success).
std::string tensor_map_error();

struct Stats {
  uint64_t launches = 0;
  uint64_t blocks = 0;
  uint64_t threads = 0;       // thread bodies run
  uint64_t barriers = 0;      // __syncthreads completed (per block)
  uint64_t collectives = 0;   // warp collectives completed (per warp)
  uint64_t switches = 0;      // fiber context switches
};
Stats stats();

}  // namespace emu
}  // namespace fastradio
