// Internal interface between the emulator's runtime (runtime.cpp: threads, rendezvous, shared
// memory) and its Hopper half (hopper.cpp: mbarriers, tensor copies, wgmma). Neither kernels nor
// host programs include it; kernels see emu/hopper.h.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

namespace fastradio {
namespace emu {

// --- provided by runtime.cpp ------------------------------------------------------------------------

// The running thread sleeps until block_wake(key) (an mbarrier phase or a named-barrier round
// completing); a block whose threads all sleep or wait is a deadlock, reported with `what` and the
// call site.
void block_wait(const void* key, const char* what, const char* file, int line);
void block_wake(const void* key);
// The running thread stays runnable and hands the CPU to a thread that block_wake(key) released, if
// any (the first in the schedule's order): on a GPU the threads an mbarrier arrival releases may run
// before the arriving thread's (and its warpgroup's) next instruction. The others resume in the
// schedule's order afterwards.
void block_yield_to(const void* key);

// Linear index of the running thread in its block, and the block's thread count.
unsigned thread_linear();
unsigned block_threads();

// A warpgroup rendezvous (the 128 threads 128w..128w+127 of the block, e.g. wgmma.mma_async): every
// thread must arrive at the same `what` and source line. Each passes a pointer to its own record
// (valid while it waits); the last to arrive calls fn(records, n = 128) with the records in thread
// order, then all go on. Divergence, exits and partial warpgroups are reported like the warp
// collectives'.
using WarpgroupFn = void (*)(void* const* records);
void warpgroup_collective(const char* what, void* record, WarpgroupFn fn, const char* file, int line);

// The block's shared-memory window: each shared buffer gets a 1024-byte aligned range of 32-bit
// "shared addresses" (what cvta.to.shared gives on a GPU; descriptors and swizzles work on them).
// shared_window_address faults (at file:line) unless [p, p + bytes) lies inside one buffer;
// shared_window_pointer returns nullptr unless [addr, addr + bytes) does.
uint32_t shared_window_address(const void* p, size_t bytes, const char* file, int line);
char* shared_window_pointer(uint32_t addr, size_t bytes);
// The block's shared buffers allocated so far.
struct SharedSpan {
  char* p;
  size_t bytes;
  uint32_t window;
};
std::vector<SharedSpan> shared_spans();

// --- provided by hopper.cpp ---------------------------------------------------------------------------

// A block starts: forget the previous block's mbarriers and wgmma groups.
void hopper_block_begin(unsigned nthreads);
// The running thread (linear index) is about to exit: false, or true with why it may not (wgmma groups
// never waited for) in why[0..n) (a buffer, not a std::string: the exiting fiber is then abandoned).
bool hopper_thread_exit(unsigned linear, char* why, size_t n);
// The block finished: "" or what it left undone (tensor copies whose mbarrier nobody waited on).
std::string hopper_block_end();

}  // namespace emu
}  // namespace fastradio
