// The emulated device's CUDA C++ language: force-included (`-include emu/device.h`) into every
// kernel source compiled as host C++ (csrc/emu/CMakeLists.txt). It maps what a kernel body uses to
// the emulator's runtime (runtime.cpp): execution-space keywords, threadIdx & co., __syncthreads,
// warp shuffles, __ldg, and the launch / shared-memory macros of common/kernel.h. The PTX wrappers
// of common/ptx.h are emulated in emu/ptx.h.
//
// Each CUDA thread runs on a fiber of its own (the kernel's code, unchanged, on its own stack);
// blocks run one at a time. Every synchronising operation (a barrier, a warp collective) is a
// rendezvous in the runtime, which checks that all threads arrive at the same call (same source
// line) and reports divergence, deadlock and exited threads. Memory the kernel reads and writes is
// ordinary host memory, so ThreadSanitizer and AddressSanitizer watch every access of every
// emulated thread (DESIGN.md "The emulated device").
#pragma once
#define FASTRADIO_EMU_DEVICE_H

#include <math.h>

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <tuple>
#include <type_traits>
#include <utility>

#include "cuda_runtime_api.h"  // the emulator's shim (csrc/emu/include)

#if !defined(FASTRADIO_EMULATION) || !defined(FASTRADIO_EMU_ARCH)
#error "emu/device.h needs -DFASTRADIO_EMULATION and -DFASTRADIO_EMU_ARCH=<arch, e.g. 80>"
#endif

// --- execution spaces and attributes ------------------------------------------------------------
#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __noinline__ __attribute__((noinline))
#define __launch_bounds__(...)
#define __align__(n) alignas(n)
#define __grid_constant__

namespace fastradio {
namespace emu {

// --- the runtime, as kernel code sees it (runtime.cpp) ------------------------------------------

struct ThreadCtx {
  dim3 thread_idx;
  dim3 block_idx;
  dim3 block_dim;
  dim3 grid_dim;
  unsigned lane;  // linear thread index % 32
};
extern ThreadCtx* g_current;  // the running emulated thread (set by the scheduler)

// Reports an execution error of the running thread (with its block/thread and the source
// location) and aborts the launch, like a fault on a GPU. Never returns to the kernel.
[[noreturn]] void fault(const char* file, int line, const char* what, ...) __attribute__((format(printf, 3, 4)));

void syncthreads(const char* file, int line);
void syncwarp(unsigned mask, const char* file, int line);
// bar.sync id, count (wait = true) / bar.arrive id, count: named barrier `id` (1..15; 0 is
// __syncthreads') of `count` threads, a multiple of 32 (emu/ptx.h; runtime.cpp has the model).
void named_barrier(unsigned id, unsigned count, bool wait, const char* file, int line);

// A warp collective: every active lane of the warp must call it with the same kind, mask and
// source line, in the same order. `in` is this lane's contribution; once the last lane has
// arrived the runtime computes every lane's result, and `out` receives this lane's.
enum class Collective : int {
  kShflSync, kShflUpSync, kShflDownSync, kShflXorSync, kBallotSync, kSyncwarp, kLdmatrix, kMmaF16K16, kMmaBf16K16,
  kMmaF16K8, kStmatrix, kBarSync, kBarArrive,
};
struct CollectiveArgs {
  Collective kind;
  unsigned mask;
  int param0 = 0;  // shfl: lane / delta / lane mask (each lane its own); ld/stmatrix: number of matrices
  int param1 = 0;  // shfl: width; ld/stmatrix: 1 = .trans
};
void warp_collective(const CollectiveArgs& args, const void* in, size_t in_bytes, void* out, size_t out_bytes,
                     const char* file, int line);

// Shared memory of the running block: a static __shared__ array (one heap buffer of exactly
// `bytes` per declaration per block, filled with 0xFF when the block starts) and the launch's
// dynamic buffer (exact size, a fresh one filled with 0xFF for every block).
void* static_shared(const void* tag, size_t bytes, size_t align, const char* name, const char* file, int line);
void* dynamic_shared(size_t align, const char* file, int line);
// Whether [p, p + bytes) lies inside one shared-memory buffer of the running block.
bool is_shared(const void* p, size_t bytes);

// cp.async bookkeeping of the running thread (the data moves in emu/ptx.h, so that the sanitizers
// see the reads and writes as the thread's own).
void cp_async_issue(void* dst, uint64_t lo, uint64_t hi);
void cp_async_commit();
struct CpAsyncCopy {
  void* dst;
  uint64_t lo, hi;
};
// The next copy that must have landed for "at most `pending` committed groups in flight"; false
// when none is left.
bool cp_async_next_landing(int pending, CpAsyncCopy* copy);

// --- launches -------------------------------------------------------------------------------------

struct LaunchConfig {
  dim3 grid;
  dim3 block;
  size_t dynamic_smem;
  cudaStream_t stream;
  const void* kernel;  // its address: the key of cudaFuncSetAttribute
  const char* name;
  const char* file;
  int line;
};
// Runs body(ctx) for every thread of every block (body calls the kernel with the launch's
// arguments). Configuration errors set cudaGetLastError(); execution errors abort the launch,
// are recorded (control.h take_errors) and make cudaGetLastError() return cudaErrorLaunchFailure.
void launch(const LaunchConfig& cfg, void (*body)(void*), void* closure);

template <class F>
struct BoundLaunch {
  LaunchConfig cfg;
  F* fn;
  template <class... Args>
  void operator()(Args&&... args) {
    // The kernel's parameters, copied once as CUDA does; each thread calls the kernel with them.
    auto closure = [f = fn, a = std::make_tuple(std::decay_t<Args>(std::forward<Args>(args))...)]() {
      std::apply([&](const auto&... v) { f(v...); }, a);
    };
    using Closure = decltype(closure);
    launch(cfg, [](void* c) { (*static_cast<Closure*>(c))(); }, &closure);
  }
};

struct Launch {
  LaunchConfig cfg;
  Launch(dim3 grid, dim3 block, size_t smem, cudaStream_t stream, const char* name, const char* file, int line)
      : cfg{grid, block, smem, stream, nullptr, name, file, line} {}
  template <class F>
  BoundLaunch<F> kernel(F* fn) {
    LaunchConfig c = cfg;
    c.kernel = reinterpret_cast<const void*>(fn);
    return BoundLaunch<F>{c, fn};
  }
};

// --- memory accesses the emulator makes on a thread's behalf (visible to the sanitizers) -----------
typedef uint64_t __attribute__((may_alias)) u64_alias;
typedef uint32_t __attribute__((may_alias)) u32_alias;
inline uint64_t load_u64(const void* p) { return *static_cast<const u64_alias*>(p); }
inline void store_u64(void* p, uint64_t v) { *static_cast<u64_alias*>(p) = v; }
inline uint32_t load_u32(const void* p) { return *static_cast<const u32_alias*>(p); }

}  // namespace emu
}  // namespace fastradio

// --- built-in variables -------------------------------------------------------------------------
#define threadIdx (::fastradio::emu::g_current->thread_idx)
#define blockIdx (::fastradio::emu::g_current->block_idx)
#define blockDim (::fastradio::emu::g_current->block_dim)
#define gridDim (::fastradio::emu::g_current->grid_dim)
#define warpSize 32

// --- the macros of common/kernel.h ------------------------------------------------------------------
#define FASTRADIO_EMU_LAUNCH(grid, block, smem, stream, ...) \
  ::fastradio::emu::Launch(grid, block, smem, stream, #__VA_ARGS__, __FILE__, __LINE__).kernel(__VA_ARGS__)
// `tag` gives each declaration (in each template instantiation) its own buffer per block.
#define FASTRADIO_EMU_SHARED(align, T, name, dims)                                                          \
  static const char fastradio_emu_tag_##name = 0;                                                           \
  auto& name = *static_cast<T(*) dims>(                                                                     \
      ::fastradio::emu::static_shared(&fastradio_emu_tag_##name, sizeof(T dims), align, #name, __FILE__, __LINE__))
#define FASTRADIO_EMU_DYNAMIC_SHARED(align, T, name) \
  T* const name = static_cast<T*>(::fastradio::emu::dynamic_shared(align, __FILE__, __LINE__))

// --- intrinsics -------------------------------------------------------------------------------------
[[noreturn]] inline void __trap(const char* file = __builtin_FILE(), int line = __builtin_LINE()) {
  ::fastradio::emu::fault(file, line, "__trap() (FASTRADIO_UNREACHABLE_ARCH: a body compiled out for sm_%d)",
                          FASTRADIO_EMU_ARCH);
}

inline void __syncthreads(const char* file = __builtin_FILE(), int line = __builtin_LINE()) {
  ::fastradio::emu::syncthreads(file, line);
}

inline void __syncwarp(unsigned mask = 0xffffffffu, const char* file = __builtin_FILE(), int line = __builtin_LINE()) {
  ::fastradio::emu::syncwarp(mask, file, line);
}

namespace fastradio {
namespace emu {
template <class T>
inline T shfl(Collective kind, unsigned mask, T v, int param, int width, const char* file, int line) {
  static_assert(sizeof(T) == 4 || sizeof(T) == 8, "shuffles move 32- or 64-bit values");
  static_assert(std::is_trivially_copyable<T>::value, "shuffles move plain values");
  T out;
  warp_collective(CollectiveArgs{kind, mask, param, width}, &v, sizeof(T), &out, sizeof(T), file, line);
  return out;
}
}  // namespace emu
}  // namespace fastradio

template <class T>
inline T __shfl_sync(unsigned mask, T v, int src_lane, int width = 32, const char* file = __builtin_FILE(),
                     int line = __builtin_LINE()) {
  return ::fastradio::emu::shfl(::fastradio::emu::Collective::kShflSync, mask, v, src_lane, width, file, line);
}
template <class T>
inline T __shfl_up_sync(unsigned mask, T v, unsigned delta, int width = 32, const char* file = __builtin_FILE(),
                        int line = __builtin_LINE()) {
  return ::fastradio::emu::shfl(::fastradio::emu::Collective::kShflUpSync, mask, v, int(delta), width, file, line);
}
template <class T>
inline T __shfl_down_sync(unsigned mask, T v, unsigned delta, int width = 32, const char* file = __builtin_FILE(),
                          int line = __builtin_LINE()) {
  return ::fastradio::emu::shfl(::fastradio::emu::Collective::kShflDownSync, mask, v, int(delta), width, file, line);
}
template <class T>
inline T __shfl_xor_sync(unsigned mask, T v, int lane_mask, int width = 32, const char* file = __builtin_FILE(),
                         int line = __builtin_LINE()) {
  return ::fastradio::emu::shfl(::fastradio::emu::Collective::kShflXorSync, mask, v, lane_mask, width, file, line);
}
inline unsigned __ballot_sync(unsigned mask, int predicate, const char* file = __builtin_FILE(),
                              int line = __builtin_LINE()) {
  const unsigned in = predicate != 0;
  unsigned out = 0;
  ::fastradio::emu::warp_collective({::fastradio::emu::Collective::kBallotSync, mask}, &in, sizeof(in), &out,
                                    sizeof(out), file, line);
  return out;
}

// A read through the read-only path: on a GPU a misaligned vector load faults.
template <class T>
inline T __ldg(const T* p, const char* file = __builtin_FILE(), int line = __builtin_LINE()) {
  if (reinterpret_cast<uintptr_t>(p) % alignof(T) != 0)
    ::fastradio::emu::fault(file, line, "__ldg of a %zu-byte value at %p, which is not %zu-byte aligned", sizeof(T),
                            static_cast<const void*>(p), alignof(T));
  return *p;
}

inline float __fmul_rn(float a, float b) { return a * b; }
inline float __fadd_rn(float a, float b) { return a + b; }
inline float __fmaf_rn(float a, float b, float c) { return fmaf(a, b, c); }
inline unsigned __float_as_uint(float x) {
  unsigned u;
  std::memcpy(&u, &x, 4);
  return u;
}
inline float __uint_as_float(unsigned u) {
  float x;
  std::memcpy(&x, &u, 4);
  return x;
}
